"""lm-eval-temporal: temporal self-consistency voting, Temporal Semantic Entropy and
Temporal Consistency Reinforcement for masked-diffusion language models (LLaDA).

The public names are loaded lazily so that ``import lm_eval_temporal`` (which the
lm-eval startup hook may trigger) costs nothing until one of them is used:

- ``TemporalPipeline`` (``pipeline``): prompts -> per-step answers -> vote, TSE -> records
- ``TemporalRecord`` (``record``): the one per-sample result; ``score`` (``metrics``)
- ``SamplerConfig``, ``TemporalConfig`` (``config``): the settings objects
- ``generate`` (``sampler``): the denoising loop with per-step capture
- ``load_model`` / ``LoadedModel`` (``loading``), ``LLaDAConfig`` / ``LLaDAModelLM`` (``llada``)
- modules ``answers`` (extraction/equivalence) and ``temporal`` (vote, TSE)
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_LAZY = {
    "TemporalPipeline": "lm_eval_temporal.pipeline",
    "TemporalRecord": "lm_eval_temporal.record",
    "score": "lm_eval_temporal.metrics",
    "SamplerConfig": "lm_eval_temporal.config",
    "TemporalConfig": "lm_eval_temporal.config",
    "LLaDAConfig": "lm_eval_temporal.llada",
    "LLaDAModelLM": "lm_eval_temporal.llada",
    "generate": "lm_eval_temporal.sampler",
    "GenerationOutput": "lm_eval_temporal.sampler",
    "load_model": "lm_eval_temporal.loading",
    "LoadedModel": "lm_eval_temporal.loading",
    "register": "lm_eval_temporal._startup",
}
_SUBMODULES = {"answers", "temporal", "record", "metrics", "config", "pipeline", "llada", "sampler", "loading"}

__all__ = sorted([*_LAZY, *_SUBMODULES, "__version__"])


def __getattr__(name: str):  # PEP 562: imports on first use
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
