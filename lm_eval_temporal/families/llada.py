"""The LLaDA family: LLaDA checkpoints (``model_type: "llada"``, loaded with this package's
weight-compatible :class:`~lm_eval_temporal.llada.LLaDAModelLM`, since the hub's remote code
does not run on transformers 5) and any other masked predictor whose forward returns
``.logits`` (BERT, ModernBERT, ... through ``AutoModelForMaskedLM``), all decoded by LLaDA's
sampler (:mod:`lm_eval_temporal.sampler`).

Official defaults (the paper's, and LLaDA's own evaluation): ``gen_length`` the task's
``max_gen_toks``, ``steps = gen_length / 2``, ``block_length`` 32, temperature 0,
``remasking=low_confidence``, no guidance (:func:`lm_eval_temporal.options.resolve_sampler`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from lm_eval_temporal import loading
from lm_eval_temporal.config import SamplerConfig
from lm_eval_temporal.families import Family, row_generators
from lm_eval_temporal.sampler import GenerationOutput, generate

__all__ = ["FAMILY", "load", "denoise"]


def load(pretrained: str, config: Mapping[str, Any], *, revision: str | None, dtype: torch.dtype,
         device: torch.device, trust_remote_code: bool, peft: str | None, mask_id: int | None,
         compile: bool) -> loading.LoadedModel:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from lm_eval_temporal.llada import LLaDAModelLM

    if config.get("model_type") == "llada":
        model = LLaDAModelLM.from_pretrained(pretrained, revision=revision, dtype=dtype)
    else:
        model = AutoModelForMaskedLM.from_pretrained(pretrained, revision=revision, dtype=dtype,
                                                     trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
    return loading.masked_model(pretrained, model, tokenizer, family="llada", peft=peft, device=device, dtype=dtype,
                                compile=compile, mask_id=mask_id)


def settings(loaded: loading.LoadedModel, opts: Any, gen_kwargs: Mapping[str, Any],
             defaults: Mapping[str, int]) -> tuple[SamplerConfig, list[str]]:
    from lm_eval_temporal.options import resolve_sampler

    return resolve_sampler(opts, dict(gen_kwargs), dict(defaults))


def denoise(loaded: loading.LoadedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            config: SamplerConfig, *, seeds: Sequence[int] | None, capture: bool, step_callback=None,
            callback_gap: bool = False) -> GenerationOutput:
    """LLaDA's sampler on a left-padded batch; ``seeds`` (one per row) drive a per-row
    ``torch.Generator`` when decoding draws random numbers, so a row never depends on its batch."""
    generators = row_generators(seeds, loaded.device, config.temperature > 0 or config.remasking == "random")
    return generate(loaded.model, input_ids.to(loaded.device), attention_mask.to(loaded.device), config=config,
                    mask_id=loaded.mask_id, eos_id=loaded.eos_id, generator=generators, capture=capture,
                    step_callback=step_callback, callback_gap=callback_gap)


FAMILY = Family(
    name="llada",
    recognises=lambda config: config.get("model_type") == "llada",
    load=load,
    settings=settings,
    denoise=denoise,
    model_args=frozenset({"gen_length", "steps", "block_length", "temperature", "cfg_scale", "remasking",
                          "suppress_eos", "parallel_threshold", "prefix_cache", "mask_id", "compile", "early_stop",
                          "mc_num", "mc_batch_size"}),
    supports_loglikelihood=True,
)
