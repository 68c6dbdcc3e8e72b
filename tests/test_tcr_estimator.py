"""TCR's trajectory-aware likelihood (``estimator: trajectory``) against a naive step-by-step
reference, on real rollouts of a random tiny LLaDA; plus its LoRA gradients, per-row seeds,
chunking, unbiasedness, one trainer run with it and the LLaDA-8B benchmark's quick path.
Also the training data that goes with it: the Countdown generator and every dataset offline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from offline_data import DATA, data_file
from tiny_models import build_tokenizer, tiny_llada

from lm_eval_temporal import tasks
from lm_eval_temporal.tcr import config
from lm_eval_temporal.tcr.trajectory import sample_steps, step_canvases, trajectory_logprobs

STEPS, GEN, BLOCK = 8, 8, 4


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add synchronisation
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def batch():
    """Three left-padded prompts, their sampled completions, commit steps and the masked
    positions the sampler's step callback saw after every step."""
    from lm_eval_temporal.decode import encode_prompt, left_pad
    from lm_eval_temporal.sampler import generate

    tok = build_tokenizer()
    model = tiny_llada(seed=1)
    ids, attn = left_pad([encode_prompt(tok, t) for t in ["Q:1+2=?\nA:", "Q:12+35-7=?\nA:", "Q:3=?\nA:"]], tok.pad_token_id)
    seen = []
    gens = [torch.Generator().manual_seed(100 + b) for b in range(3)]
    out = generate(model, ids, attn, gen_length=GEN, steps=STEPS, block_length=BLOCK, temperature=0.9,
                   generator=gens, capture=True, step_callback=lambda s, x0, masked: seen.append(masked.clone()))
    P = ids.shape[1]
    return dict(model=model, mask_id=tok.mask_token_id, ids=ids, attn=attn, comp=out.sequences[:, P:],
                commit=out.commit_step, masked_after=seen)


def _call(b, rows=None, seeds=(11, 22, 33), **kw):
    rows = list(range(3)) if rows is None else rows
    kw.setdefault("k", STEPS)
    return trajectory_logprobs(b["model"], b["ids"][rows], b["attn"][rows], b["comp"][rows], b["commit"][rows],
                               list(seeds), mask_id=b["mask_id"], **kw)


def _naive(b, row: int, token_mask=None) -> torch.Tensor:
    """[G] log p(token | canvas of its commit step), one unpadded forward per step."""
    model, mask_id = b["model"], b["mask_id"]
    prompt = b["ids"][row][b["attn"][row].bool()]
    comp, cs = b["comp"][row], b["commit"][row]
    out = torch.zeros(GEN)
    with torch.no_grad():
        for s in range(STEPS):
            canvas = torch.where(cs < s, comp, torch.full_like(comp, mask_id))
            logits = model(input_ids=torch.cat([prompt, canvas])[None]).logits[0, len(prompt):]
            lp = torch.log_softmax(logits.double(), dim=-1)
            for i in range(GEN):
                if cs[i] == s and (token_mask is None or token_mask[i]):
                    out[i] = float(lp[i, comp[i]])
    return out


def test_canvases_are_what_the_sampler_saw(batch):
    b = batch
    assert (b["commit"] >= 0).all() and (b["commit"] < STEPS).all()
    for s in range(STEPS):
        rows = torch.arange(3)
        x = step_canvases(b["ids"], b["comp"], b["commit"], rows, torch.full((3,), s), mask_id=b["mask_id"])
        still = x[:, b["ids"].shape[1]:] == b["mask_id"]
        # Before step s the canvas is masked exactly where it was after step s - 1.
        want = torch.ones_like(still) if s == 0 else b["masked_after"][s - 1]
        assert torch.equal(still, want), s
        assert torch.equal(x[:, : b["ids"].shape[1]], b["ids"])  # the prompt is never noised


def test_all_steps_equal_the_naive_step_by_step_sum(batch):
    # (a) K = T: every step is scored, weights are 1, and each token's log-prob is the one at
    # the canvas of its commit step, as a loop over the steps computes it.
    b = batch
    with torch.no_grad():
        got = _call(b)
    plan = sample_steps(b["commit"], None, [11, 22, 33], STEPS)
    assert torch.equal(plan.weight, torch.ones(3, GEN))
    for row in range(3):
        ref = _naive(b, row)
        assert torch.allclose(got[row], ref, atol=1e-5), (row, got[row], ref)
        assert float(got[row].sum()) == pytest.approx(float(ref.sum()), abs=1e-4)
    # With a completion mask only the kept tokens' steps count.
    keep = torch.zeros(3, GEN, dtype=torch.bool)
    keep[:, :3] = True
    with torch.no_grad():
        part = _call(b, token_mask=keep)
    for row in range(3):
        assert torch.allclose(part[row], _naive(b, row, keep[row]), atol=1e-5)


def test_gradients_reach_lora_weights_only(batch):
    # (b) through peft, as the trainer wraps the model; B is random so that A's gradient is non-zero.
    from peft import LoraConfig, get_peft_model

    from lm_eval_temporal.tcr.trainer import lora_target_regex

    def wrapped(checkpointing: bool):
        model = tiny_llada(seed=1)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        torch.manual_seed(5)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_regex(["q_proj", "v_proj", "ff_out"]),
                         init_lora_weights=False)
        return get_peft_model(model, cfg).train()

    grads = []
    for ckpt in (False, True):
        policy = wrapped(ckpt)
        plan = sample_steps(batch["commit"], None, [1, 2, 3], 2)
        lp = _call({**batch, "model": policy}, seeds=(1, 2, 3), k=2, batch_size=2)
        (lp * plan.weight).sum().backward()
        lora = {n: p for n, p in policy.named_parameters() if "lora_" in n}
        assert lora and all(p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
        base = [(n, p) for n, p in policy.named_parameters() if "lora_" not in n]
        assert base and all(not p.requires_grad and p.grad is None for _, p in base)
        grads.append({n: p.grad.clone() for n, p in lora.items()})
    # Gradient checkpointing (the LLaDA-8B setting) recomputes the same gradients.
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-5) for n in grads[0])


def test_a_rows_estimate_depends_on_its_seed_and_tokens_only(batch):
    # (c) K < T, so the drawn steps matter: other rows, their order and their padding do not.
    b = batch
    seeds = (11, 22, 33)
    with torch.no_grad():
        torch.manual_seed(0)
        a = _call(b, k=2, seeds=seeds)
        torch.manual_seed(99)  # the global RNG plays no part
        again = _call(b, k=2, seeds=seeds)
        perm = [2, 0, 1]
        c = _call(b, rows=perm, k=2, seeds=[seeds[i] for i in perm])
        n = int(b["attn"][2].sum())
        one = trajectory_logprobs(b["model"], b["ids"][2:, -n:], b["attn"][2:, -n:], b["comp"][2:], b["commit"][2:],
                                  [33], mask_id=b["mask_id"], k=2)
        other = _call(b, k=2, seeds=(44, 55, 66))
    assert torch.equal(a, again)
    assert torch.allclose(c, a[perm], atol=1e-5)
    assert torch.allclose(one, a[2:], atol=1e-5)
    w = sample_steps(b["commit"], None, seeds, 2).weight
    assert torch.equal(sample_steps(b["commit"][perm], None, [seeds[i] for i in perm], 2).weight, w[perm])
    assert torch.equal(sample_steps(b["commit"][2:], None, [33], 2).weight, w[2:])
    # 2 of the 8 steps (each commits one token here) with weight 8/2; other seeds draw others.
    assert sorted(set(w.flatten().tolist())) == [0.0, 4.0] and ((w > 0).sum(1) == 2).all()
    assert ((a != 0) == (w > 0)).all()
    assert not torch.equal(sample_steps(b["commit"], None, (44, 55, 66), 2).weight, w) and not torch.equal(other, a)


def test_chunked_equals_unchunked(batch):
    # (d) batch_size counts (row, step) pairs: 3 rows x 3 drawn steps = 9 pairs.
    with torch.no_grad():
        full = _call(batch, k=3)
        for size in (1, 2, 4, 9, 50):
            assert torch.allclose(_call(batch, k=3, batch_size=size), full, atol=1e-6), size


def test_estimate_is_unbiased_over_seeds(batch):
    # (e) Each row repeated R times with R fixed seeds: the mean of sum(w * logp) approaches the
    # exact K = T sum. The seeds are fixed, so this never flakes; the bound is 4 standard errors
    # of that very sample (and the exact-enumeration identity below holds to rounding).
    b = batch
    R, K = 240, 2
    with torch.no_grad():
        exact = _call(b).sum(1)
        for row in range(3):
            rows = [row] * R
            seeds = [1000 * row + r for r in range(R)]
            lp = _call(b, rows=rows, seeds=seeds, k=K, batch_size=96)
            w = sample_steps(b["commit"][rows], None, seeds, K).weight
            est = (lp * w).sum(1).double()
            se = float(est.std()) / math.sqrt(R)
            assert se > 0 and abs(float(est.mean()) - float(exact[row])) < 4 * se, (row, float(est.mean()), float(exact[row]), se)
            # Every token's weight averages to 1 (inclusion probability k/n times n/k).
            assert torch.allclose(w.mean(0), torch.ones(GEN), atol=0.25)
    # Averaged over all C(n, k) step subsets the estimate is exactly the sum.
    from itertools import combinations

    per_step = torch.zeros(3, STEPS)
    with torch.no_grad():
        per_step.scatter_add_(1, b["commit"], _call(b))
    subsets = list(combinations(range(STEPS), K))
    mean = torch.stack([per_step[:, list(s)].sum(1) * STEPS / K for s in subsets]).mean(0)
    assert torch.allclose(mean, exact, atol=1e-4)


def test_trainer_with_the_trajectory_estimator(tmp_path):
    from test_tcr import _metrics, _trainer

    tr = _trainer(tmp_path, estimator="trajectory", trajectory_steps=2, num_iterations=2, max_steps=2, beta=0.04,
                  logprob_batch_size=3, loss_normalization="completion")
    seen = []
    real = tr._rollout
    tr._rollout = lambda rnd, m: seen.append(real(rnd, m)) or seen[-1]
    tr.train()
    recs = _metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["inner_iteration"] for r in recs] == [0, 1]
    assert recs[0]["ratio_mean"] == 1.0 and recs[0]["clip_fraction"] == 0.0 and recs[0]["kl"] == 0.0
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["kl"]) for r in recs)
    assert recs[1]["ratio_mean"] != 1.0  # the step moved the policy on the drawn canvases
    ro = seen[0]
    assert ro.commit_step.shape == ro.completion_ids.shape and (ro.commit_step[ro.completion_mask] >= 0).all()
    saved = json.loads((tmp_path / "run" / "tcr_config.json").read_text())
    assert saved["estimator"] == "trajectory" and saved["trajectory_steps"] == 2


def test_gpu_benchmark_quick_runs_both_estimators():
    # benchmarks/tcr_gpu.py --quick: the LLaDA-8B check's code path at tiny shapes on the CPU.
    import os
    import re
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tcr_gpu.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(script), "--quick", "--threads", "1"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    num = r"\d+(?:\.\d+)?"
    assert re.fullmatch(rf"tcr_gpu_step_s=one_step:{num},trajectory:{num} peak_gb=one_step:{num},trajectory:{num}",
                        lines[-1]), lines[-1]
    assert any(x.startswith("estimator=trajectory rows_per_pass=24 ") for x in lines), lines


# ---------------------------------------------------------------------------- training data

def test_countdown_generator_reachable_deterministic_and_held_out():
    from lm_eval_temporal import answers
    from lm_eval_temporal.tcr import countdown
    from lm_eval_temporal.tcr.data import load_problems

    probs = load_problems("countdown", limit=300, seed=5)
    assert [p.question for p in probs] == [p.question for p in load_problems("countdown", limit=300, seed=5)]
    assert probs[0].question != load_problems("countdown", limit=1, seed=6)[0].question
    assert len({p.question for p in probs}) == 300
    stream = countdown.training_stream(seed=5)
    for p in probs:
        raw = next(stream)
        (numbers, target) = p.gold
        assert (numbers, target) == (raw["numbers"], raw["target"]) and len(numbers) == 3
        assert all(1 <= x <= 100 for x in numbers) and 1 <= target <= 100
        # Reachable: the generator's witness expression is a correct answer (the safe parser).
        assert answers.is_correct(raw["solution"], p.gold, "countdown"), raw
        assert not countdown.is_held_out(numbers, target)
        assert p.user_prompt.startswith(tasks.SYSTEM_PROMPTS["countdown"] + "\n\n")
    # The hash split holds out about 1/8 of all problems; some targets are unreachable.
    rng = __import__("random").Random(0)
    made = [countdown.make_problem(rng) for _ in range(2000)]
    assert any(m is None for m in made)
    held = [countdown.is_held_out(m["numbers"], m["target"]) for m in made if m]
    assert 0.08 < sum(held) / len(held) < 0.18


def test_countdown_training_never_meets_the_test_file(tmp_path, monkeypatch):
    from lm_eval_temporal.tcr import countdown
    from lm_eval_temporal.tcr.data import load_problems

    # The wording is the evaluation task's (tasks.load_countdown) for the same numbers.
    (tmp_path / "countdown").mkdir()
    (tmp_path / "countdown" / "cd3_test.jsonl").write_text('{"input": "30,100,93", "output": "23"}\n')
    monkeypatch.setenv(tasks.DATA_ENV, str(tmp_path))
    assert tasks.load_countdown()["test"][0]["question"] == countdown.question_text([30, 100, 93], 23)
    test_file = data_file("countdown/cd3_test.jsonl")
    rows = [json.loads(x) for x in test_file.read_text().splitlines() if x.strip()]
    problems = [([int(n) for n in r["input"].split(",")], int(r["output"])) for r in rows]
    assert len(problems) == 256 and all(countdown.is_held_out(*p) for p in problems)
    test_keys = {countdown.problem_key(*p) for p in problems}
    train = load_problems("countdown", limit=5000)
    assert not {countdown.problem_key(*p.gold) for p in train} & test_keys


@pytest.mark.parametrize("dataset", ["gsm8k", "svamp", "countdown", "arith_chain"])
def test_every_dataset_loads_offline(dataset, monkeypatch):
    if dataset in ("gsm8k", "svamp"):
        data_file(f"{dataset}/train.jsonl")
    from lm_eval_temporal.tcr.data import load_problems

    monkeypatch.setenv(tasks.DATA_ENV, str(DATA))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = config.load_config(None, ["--dataset", dataset, "--max_train_prompts", "4"])
    probs = load_problems(cfg.dataset, limit=cfg.max_train_prompts, data_dir=cfg.data_dir, seed=cfg.seed)
    assert len(probs) == 4
    from lm_eval_temporal import answers

    for p in probs:
        assert p.question in p.user_prompt
        answers.normalize_gold(p.gold, cfg.task)  # golds are in the answer task's form
    assert cfg.task == ("gsm8k" if dataset == "arith_chain" else dataset)
    assert cfg.prefix == ("" if dataset == "arith_chain" else "<reasoning>")
