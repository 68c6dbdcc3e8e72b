"""The family layer through the backend: a DiffusionGemma checkpoint evaluates like a LLaDA one
(per-step capture, vote, TSE, tokens per forward pass), arguments of another family are
refused before any weight is read, and tpf is counted the leaderboard's way for both."""

from __future__ import annotations

import json

import pytest
import torch
from lm_eval.api.instance import Instance

from lm_eval_temporal import trace
from lm_eval_temporal.backend import LLaDATemporalLM, _row_seed
from lm_eval_temporal.errors import OptionError
from lm_eval_temporal.tasks import tokens_per_forward

torch.set_num_threads(1)  # tiny matrices: extra threads only add synchronisation

PROMPTS = ["Q:1+2=?", "Q:30-7=?", "hello"]
GEN_KWARGS = {"until": [], "max_gen_toks": 32}


def requests(doc=None):
    doc = doc if doc is not None else {"_temporal": {"task": "gsm8k"}, "gold": "3"}
    return [Instance("generate_until", doc, (p, dict(GEN_KWARGS)), i, metadata=("arith_chain", i, 1))
            for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def dg_dir(tmp_path_factory):
    from tiny_diffusion_gemma import build_tiny_diffusion_gemma

    return build_tiny_diffusion_gemma(tmp_path_factory.mktemp("dg"))


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("llada"))


@pytest.fixture(scope="module")
def dg_lm(dg_dir):
    return LLaDATemporalLM(pretrained=str(dg_dir), batch_size=3)


@pytest.fixture(scope="module")
def dg_out(dg_lm):
    return dg_lm.generate_until(requests(), disable_tqdm=True)


def test_diffusion_gemma_is_recognised_and_its_settings_come_from_its_generation_config(dg_lm, dg_out):
    from tiny_diffusion_gemma import GENERATION

    info = dg_lm.get_model_info()["llada_temporal"]
    assert dg_lm.family.name == "diffusion_gemma" and info["family"] == "diffusion_gemma"
    (schedule,) = info["schedules"]
    assert {k: schedule[k] for k in GENERATION} == GENERATION  # the checkpoint's, recorded as used


def test_answers_are_what_transformers_generate_produced_for_each_rows_seed(dg_dir):
    """Each response (vote=none: the final text) is the text transformers' own generate returns
    for the prompt alone, seeded with the row's seed: nothing of the loop is copied."""
    dg_lm = LLaDATemporalLM(pretrained=str(dg_dir), batch_size=3, vote="none")
    model = dg_lm.loaded.model
    for prompt, response in zip(PROMPTS, dg_lm.generate_until(requests(), disable_tqdm=True)):
        text, record = trace.split(response)
        ids = torch.tensor([dg_lm.tok_encode(prompt)])
        torch.manual_seed(_row_seed(dg_lm.opts.seed, prompt, json.dumps(GEN_KWARGS, sort_keys=True, default=str)))
        settings = dg_lm.get_model_info()["llada_temporal"]["schedules"][0]
        kwargs = {k: v for k, v in settings.items() if k not in ("rounded", "tasks", "canvas_length")}
        from transformers import EntropyBoundSamplerConfig

        kwargs["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=kwargs.pop("entropy_bound"))
        out = model.generate(ids, max_length=None, **kwargs).sequences[0, ids.shape[1]:]
        assert text == dg_lm.pipeline.decoder.texts(out[None])[0]
        assert record.steps_run >= 2  # per-step capture: at least two steps per sample
        assert record.nfe == record.steps_run  # one decoder pass per captured step


def test_batch_composition_never_changes_a_diffusion_gemma_row(dg_dir, dg_out):
    alone = LLaDATemporalLM(pretrained=str(dg_dir), batch_size=1)
    assert alone.generate_until(requests(), disable_tqdm=True) == dg_out


def test_tpf_is_summed_tokens_over_summed_forward_passes(dg_lm, dg_out):
    records = [trace.split(r)[1] for r in dg_out]
    eff = dg_lm.get_model_info()["llada_temporal"]["efficiency"]
    assert eff["tokens"] == sum(r.tokens for r in records) and eff["forward_passes"] == sum(r.nfe for r in records)
    assert eff["tpf"] == pytest.approx(eff["tokens"] / eff["forward_passes"])
    # the task aggregation: a ratio of sums, not a mean of per-sample ratios
    assert tokens_per_forward([(10, 2), (0, 8)]) == 1.0 and tokens_per_forward([]) != tokens_per_forward([])


def test_llada_tpf_is_output_tokens_over_steps_and_guidance_counts_twice(llada_dir):
    doc = {"_temporal": {"task": "gsm8k"}, "gold": "3"}
    for cfg_scale, passes in ((0.0, 8), (1.0, 16)):
        lm = LLaDATemporalLM(pretrained=str(llada_dir), gen_length=16, steps=8, block_length=8, cfg_scale=cfg_scale)
        for response in lm.generate_until(requests(doc), disable_tqdm=True):
            record = trace.split(response)[1]
            assert record.nfe == passes and 0 <= record.tokens <= 16
        eff = lm.get_model_info()["llada_temporal"]["efficiency"]
        assert eff["forward_passes"] == passes * len(PROMPTS)


@pytest.mark.parametrize("args, message", [
    (dict(block_length=16), "block_length: not used by diffusion_gemma models"),
    (dict(early_stop="stable"), "early_stop: not used by diffusion_gemma models"),
    (dict(family="llada"), "family='llada': this checkpoint is a diffusion_gemma model"),
])
def test_arguments_of_another_family_are_refused_before_loading(dg_dir, args, message, monkeypatch):
    import lm_eval_temporal.backend as backend

    monkeypatch.setattr(backend, "load_model", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(OptionError, match=message):
        LLaDATemporalLM(pretrained=str(dg_dir), **args)


def test_llada_refuses_diffusion_gemma_arguments_and_family(llada_dir):
    with pytest.raises(OptionError, match="t_min: not used by llada models"):
        LLaDATemporalLM(pretrained=str(llada_dir), t_min=0.1)
    with pytest.raises(OptionError, match="family='diffusion_gemma': this checkpoint is a llada model"):
        LLaDATemporalLM(pretrained=str(llada_dir), family="diffusion_gemma")
    with pytest.raises(OptionError, match="family='bert'"):
        LLaDATemporalLM(pretrained=str(llada_dir), family="bert")


def test_diffusion_gemma_has_no_loglikelihood(dg_lm):
    with pytest.raises(NotImplementedError, match="diffusion_gemma models have no log-likelihood"):
        dg_lm.loglikelihood([Instance("loglikelihood", {}, ("Q:1+2=", "3"), 0)])


def test_dllm_temporal_is_the_same_backend():
    from lm_eval.api.registry import get_model

    assert get_model("dllm_temporal") is get_model("llada_temporal") is LLaDATemporalLM
