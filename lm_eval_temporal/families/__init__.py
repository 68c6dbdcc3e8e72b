"""Model families: what differs between diffusion LM lines, behind one small interface.

A :class:`Family` knows four things: how to recognise a checkpoint (its ``config.json``), how to
load it (a :class:`~lm_eval_temporal.loading.LoadedModel`), the decoding settings of a request
(its official defaults, overridden by model arguments of its own), and how to denoise a batch
with per-step capture (a :class:`~lm_eval_temporal.sampler.GenerationOutput`: every step's
tokens over the generation span, the steps each row ran and the forward passes it used). The
pipeline, the record, the vote, TSE and the metrics never ask which family they run.

- ``llada``: LLaDA (this package's weight-compatible model; the hub code does not run on
  transformers 5) and any other masked predictor (``AutoModelForMaskedLM``), decoded by
  :mod:`lm_eval_temporal.sampler`;
- ``diffusion_gemma``: transformers' ``DiffusionGemmaForBlockDiffusion``, decoded by
  transformers' own ``generate`` (:mod:`lm_eval_temporal.families.diffusion_gemma`);
- ``llada_moe``: LLaDA-MoE (this package's weight-compatible mixture-of-experts model), decoded
  by LLaDA's sampler with dllm's evaluation defaults (:mod:`lm_eval_temporal.families.llada_moe`).
- ``dream``: Dream / DiffuCoder / Dream-Coder (this package's weight-compatible model),
  decoded by Dream's official ``diffusion_generate`` rules (:mod:`lm_eval_temporal.families.dream`).
- ``llada2``: LLaDA2.0 / 2.1 (this package's weight-compatible MoE model), decoded by the hub's
  block decoding with ``threshold`` and ``eos_early_stop`` (:mod:`lm_eval_temporal.families.llada2`).

What the pipeline reads of a settings object (``SamplerConfig`` for llada and llada_moe,
``DiffusionGemmaSettings``, ``DreamSettings``, ``LLaDA2Settings``): ``gen_length`` (the most
tokens a row can generate), ``steps`` (the steps of its full schedule) and ``fixed_schedule``, from which
:func:`lm_eval_temporal.config.horizon` takes each row's horizon T (docs/algorithm.md, "The
horizon T").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Family", "NAMES", "get", "detect", "foreign_names", "foreign_args", "row_generators"]

NAMES = ("llada", "diffusion_gemma", "llada_moe", "dream", "llada2")  # ``family=`` values besides ``auto``


@dataclass(frozen=True)
class Family:
    """One model line. ``load(pretrained, config, *, revision, dtype, device, trust_remote_code,
    peft, mask_id, compile)`` -> LoadedModel; ``settings(loaded, opts, gen_kwargs, defaults)`` ->
    (settings, what had to be rounded); ``denoise(loaded, input_ids, attention_mask, settings, *,
    seeds, capture, step_callback, callback_gap)`` -> GenerationOutput. ``model_args``: the
    model arguments that act on this family alone (refused, when set, for the others)."""

    name: str
    recognises: Callable[[Mapping[str, Any]], bool]
    load: Callable[..., Any]
    settings: Callable[..., tuple[Any, list[str]]]
    denoise: Callable[..., Any]
    model_args: frozenset[str]
    supports_loglikelihood: bool = False


def get(name: str) -> Family:
    """The family called ``name`` (imported on use: loading one does not import the others)."""
    if name == "llada":
        from lm_eval_temporal.families.llada import FAMILY
    elif name == "diffusion_gemma":
        from lm_eval_temporal.families.diffusion_gemma import FAMILY
    elif name == "llada_moe":
        from lm_eval_temporal.families.llada_moe import FAMILY
    elif name == "dream":
        from lm_eval_temporal.families.dream import FAMILY
    elif name == "llada2":
        from lm_eval_temporal.families.llada2 import FAMILY
    else:
        raise ValueError(f"family={name!r}: expected auto or one of {', '.join(NAMES)}")
    return FAMILY


def detect(config: Mapping[str, Any]) -> Family:
    """The family of a checkpoint from its ``config.json`` (model_type / architectures); a
    config no family claims is read as a masked predictor for LLaDA's sampler."""
    for name in NAMES[1:]:
        family = get(name)
        if family.recognises(config):
            return family
    return get("llada")


def foreign_names(family: Family) -> frozenset[str]:
    """The model arguments that act on other families only."""
    return frozenset().union(*(get(n).model_args for n in NAMES if n != family.name)) - family.model_args


def foreign_args(family: Family, given: Mapping[str, Any]) -> list[str]:
    """The model arguments in ``given`` (name -> value, only those set away from their
    defaults) that belong to another family than ``family``."""
    return sorted(set(given) & foreign_names(family))


def row_generators(seeds: Any, device: Any, draws: bool) -> list | None:
    """One ``torch.Generator`` per row, seeded from its request, when decoding draws random
    numbers (None otherwise): a row's draws never depend on the rest of its batch."""
    if seeds is None or not draws:
        return None
    import torch

    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
