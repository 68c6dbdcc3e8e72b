"""End-to-end `lm_eval` CLI runs (subprocesses) on a tiny locally built LLaDA, offline."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import offline_data
import pytest

from lm_eval_temporal import trace

pytestmark = pytest.mark.slow
LM_EVAL = os.path.join(os.path.dirname(sys.executable), "lm_eval")
TASKS = ["gsm8k_temporal", "svamp", "math500", "countdown"]
METRICS = ["exact_match", "final_pass", "ever_pass", "tse", "tpf", "nfe"]
DATA = str(offline_data.DATA)  # absolute: the lm_eval subprocesses run in a temporary folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("cli_llada"))


def lm_eval(*args: str, cwd: Path, data: str | None = DATA) -> subprocess.CompletedProcess:
    """``lm_eval ARGS`` offline, reading the offline folder ``data`` (None: the variable unset)."""
    env = {**os.environ, "LM_EVAL_TEMPORAL_DATA": data or "", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([LM_EVAL, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def results_of(out_dir: Path) -> dict:
    (path,) = glob.glob(str(out_dir / "**" / "results_*.json"), recursive=True)
    return json.loads(Path(path).read_text())["results"]


@pytest.mark.skipif(not os.path.isdir(DATA), reason=f"offline benchmark data not found at {DATA}")
def test_four_tasks_report_four_metrics_log_samples_and_cache(tiny_dir, tmp_path):
    model_args = f"pretrained={tiny_dir},gen_length=16,steps=8,block_length=8"
    common = ["--model", "llada_temporal", "--model_args", model_args, "--tasks", ",".join(TASKS),
              "--limit", "2", "--batch_size", "4", "--log_samples", "--use_cache", str(tmp_path / "cache")]
    r1 = lm_eval(*common, "--output_path", str(tmp_path / "run1"), cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr[-3000:]
    res = results_of(tmp_path / "run1")
    for task in TASKS:
        for m in METRICS:
            v = res[task][f"{m},none"]
            assert isinstance(v, float) and not math.isnan(v), (task, m, v)
        assert 0.0 <= res[task]["final_pass,none"] <= res[task]["ever_pass,none"] <= 1.0

    # the samples log carries the per-step answers
    (samples,) = glob.glob(str(tmp_path / "run1" / "**" / "samples_svamp_*.jsonl"), recursive=True)
    first = json.loads(Path(samples).read_text().splitlines()[0])
    text, record = trace.split(first["resps"][0][0])
    assert record is not None and len(record.answers) == 8

    # a second run is served entirely from the cache and gives identical results
    r2 = lm_eval(*common, "--output_path", str(tmp_path / "run2"), cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "Requests remaining: 0" in r2.stderr + r2.stdout
    res2 = results_of(tmp_path / "run2")
    for task in TASKS:
        for m in METRICS:
            assert res2[task][f"{m},none"] == res[task][f"{m},none"]


def test_invalid_model_args_fail_fast_with_named_error(tmp_path):
    r = lm_eval("--model", "llada_temporal", "--model_args", "vote=majority", "--tasks", "arith_chain", "--limit", "1", cwd=tmp_path)
    assert r.returncode != 0
    # The message alone, as the last line: no traceback through lm-eval's internals.
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("lm_eval: error: model argument vote='majority': expected one of none, fixed, linear, exp")


def test_embedded_model_arith_chain_and_lm_eval_run_subcommand(tmp_path):
    r = subprocess.run([LM_EVAL.replace("lm_eval", "lm-eval"), "run", "--model", "llada_temporal", "--tasks", "arith_chain",
                        "--limit", "4", "--batch_size", "4", "--output_path", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results_of(tmp_path / "out")["arith_chain"]
    assert all(not math.isnan(res[f"{m},none"]) for m in METRICS)
    # The results JSON records the effective settings, the package version and the checkpoint.
    (path,) = glob.glob(str(tmp_path / "out" / "**" / "results_*.json"), recursive=True)
    info = json.loads(Path(path).read_text())["config"]["llada_temporal"]
    assert info["version"] and info["settings"]["vote"] == "exp" and info["temporal"]["alpha"] == 5.0
    assert [(s["gen_length"], s["steps"], s["block_length"], s["rounded"]) for s in info["schedules"]] == [(32, 32, 8, [])]
    assert info["checkpoint"]["pretrained"] == "embedded" and len(info["checkpoint"]["weights_sha256"]) == 64
    assert "llada_temporal: pretrained=embedded " in r.stderr and " gen_length=32 steps=32 block_length=8 " in r.stderr
    assert "CUDA is not available" not in r.stderr  # lm-eval's default device is not the user's choice


@pytest.mark.skipif(not os.path.isdir(DATA), reason=f"offline benchmark data not found at {DATA}")
def test_headline_command_runs_offline_with_builtin_gsm8k(tiny_dir, tmp_path):
    """lm-eval's own gsm8k (openai/gsm8k on the Hub) is served from the offline folder."""
    r = lm_eval("--model", "llada_temporal", "--model_args", f"pretrained={tiny_dir},gen_length=16,steps=8,block_length=8",
                "--tasks", "gsm8k,svamp", "--limit", "2", "--batch_size", "4", "--output_path", str(tmp_path / "o"),
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results_of(tmp_path / "o")
    assert "exact_match,strict-match" in res["gsm8k"] and "tse,none" in res["svamp"]


@pytest.mark.skipif(not os.path.isdir(DATA), reason=f"offline benchmark data not found at {DATA}")
def test_used_by_command_on_the_embedded_model_says_why_it_scores_zero(tmp_path):
    """The README's used-by command without model args: the embedded model meets tasks it was not
    trained for, and the run says so at start, naming the real command."""
    r = lm_eval("--model", "llada_temporal", "--tasks", "gsm8k,svamp", "--limit", "2", "--batch_size", "4",
                "--output_path", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("runs the embedded 1.9M-parameter arithmetic model") == 1
    assert ("--model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,gen_length=256,steps=128,block_length=32 "
            "--tasks gsm8k,svamp --apply_chat_template") in r.stderr
    (path,) = glob.glob(str(tmp_path / "o" / "**" / "results_*.json"), recursive=True)
    config = json.loads(Path(path).read_text())["config"]
    info = config["llada_temporal"]
    assert [s["tasks"] for s in info["schedules"]] == [["gsm8k", "svamp"]]
    import torch

    if not torch.cuda.is_available():  # lm-eval records its default --device, cuda:0, all the same
        assert config["device"] == "cuda:0" and info["device"] == "cpu"
        assert info["device_note"] == "config.device=cuda:0 was asked for; the model ran on cpu"


def test_builtin_gsm8k_without_the_offline_folder_fails_fast_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached copy of openai/gsm8k either
    r = lm_eval("--model", "llada_temporal", "--tasks", "gsm8k", "--limit", "1", cwd=tmp_path, data=None)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("lm_eval: error: could not load openai/gsm8k (main) from the Hugging Face Hub"), last
    assert "LM_EVAL_TEMPORAL_DATA" in last and "lm-eval-temporal fetch-data DIR" in last


@pytest.mark.skipif(not os.path.isdir(DATA), reason=f"offline benchmark data not found at {DATA}")
def test_hf_causal_baseline_runs_our_task_config(tmp_path):
    """Autoregressive baselines use the same configs: exact_match scored, temporal metrics NaN."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tiny_models import build_tokenizer

    tok = build_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    d = tmp_path / "tiny_causal"
    LlamaForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    r = lm_eval("--model", "hf", "--model_args", f"pretrained={d}", "--device", "cpu", "--tasks", "svamp", "--limit", "2",
                "--gen_kwargs", "max_gen_toks=8", "--output_path", str(tmp_path / "hf"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results_of(tmp_path / "hf")["svamp"]
    assert res["exact_match,none"] in (0.0, 0.5, 1.0)
    assert all(math.isnan(res[f"{m},none"]) for m in ("final_pass", "ever_pass", "tse"))


def test_diffusion_gemma_checkpoint_through_dllm_temporal(tmp_path):
    """A DiffusionGemma checkpoint directory evaluates through the family-neutral name with
    per-step capture, and reports the temporal metrics and tokens per forward pass."""
    from tiny_diffusion_gemma import build_tiny_diffusion_gemma

    records = family_run(f"pretrained={build_tiny_diffusion_gemma(tmp_path / 'dg')}", tmp_path)
    assert all(rec.steps_run >= 2 for rec in records)


def family_run(model_args: str, tmp_path: Path) -> list:
    """``lm_eval --model dllm_temporal`` on three arith_chain samples: checks that it reports
    every metric (tpf as the ratio of the samples' sums) and returns the samples' records."""
    r = lm_eval("--model", "dllm_temporal", "--model_args", model_args, "--tasks", "arith_chain",
                "--limit", "3", "--batch_size", "3", "--log_samples", "--output_path", str(tmp_path / "out"),
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = results_of(tmp_path / "out")["arith_chain"]
    for m in METRICS:
        assert isinstance(res[f"{m},none"], float) and not math.isnan(res[f"{m},none"]), m
    (samples,) = glob.glob(str(tmp_path / "out" / "**" / "samples_arith_chain_*.jsonl"), recursive=True)
    records = [trace.split(json.loads(line)["resps"][0][0])[1] for line in Path(samples).read_text().splitlines()]
    assert len(records) == 3
    assert res["tpf,none"] == pytest.approx(sum(rec.tokens for rec in records) / sum(rec.nfe for rec in records))
    return records
