"""DiffusionGemma's decoding settings: the checkpoint's ``generation_config`` decoding fields,
overridable one by one under their own names (model arguments of the same names), checked by
the package's one rule per field (:mod:`lm_eval_temporal.coerce`), and recorded as used.
Torch-free, so model arguments are checked before any model work."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from lm_eval_temporal.coerce import check_fields, option

__all__ = ["DiffusionGemmaSettings"]


def _transformers_defaults() -> dict[str, Any]:
    """What transformers' ``generate`` uses for a field the checkpoint leaves unset (its
    ``DiffusionGemmaGenerationConfig._get_default_generation_params``, transformers 5.24):
    read from there, not copied, so the record states what actually ran."""
    from transformers import DiffusionGemmaGenerationConfig

    return DiffusionGemmaGenerationConfig._get_default_generation_params()


@dataclass(frozen=True)
class DiffusionGemmaSettings:
    """One run's decoding settings (names as in transformers' DiffusionGemmaGenerationConfig;
    ``entropy_bound`` is its ``sampler_config.entropy_bound``) and the model's ``canvas_length``.

    transformers rounds ``max_new_tokens`` up to whole canvases, so a row returns up to
    ``ceil(max_new_tokens / canvas_length)`` canvases, each denoised for at most
    ``max_denoising_steps`` steps; adaptive stopping (``stability_threshold``,
    ``confidence_threshold``) ends a row's canvas sooner, so every row chooses its own number
    of steps (``fixed_schedule`` is False: docs/algorithm.md, "The horizon T")."""

    max_new_tokens: int = option(lo=1)
    max_denoising_steps: int = option(lo=1)
    t_min: float = option(lo=0.0)
    t_max: float = option(lo=0.0)
    entropy_bound: float = option(lo=0.0, lo_open=True)
    stability_threshold: int = option(lo=0)
    confidence_threshold: float = option(lo=0.0, lo_open=True)
    canvas_length: int = option(256, lo=1)  # the model's (config.canvas_length), not a decoding choice

    fixed_schedule = False  # the pipeline's question: is the number of steps known before decoding?

    def __post_init__(self):
        # model arguments such as t_min=0 arrive as ints; transformers insists on floats
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
        check_fields(self)
        if self.t_max <= self.t_min:
            # the temperature falls from t_max (first step) to t_min (last step)
            raise ValueError(f"t_max / t_min: expected t_max > t_min, got t_max={self.t_max}, t_min={self.t_min}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The decoding settings a checkpoint's generation_config holds (and model args override)."""
        return tuple(f.name for f in fields(cls) if f.name != "canvas_length")

    @classmethod
    def from_generation_config(cls, gen_config: Any, canvas_length: int = 256, **overrides: Any) -> DiffusionGemmaSettings:
        """The checkpoint's ``gen_config`` (a DiffusionGemmaGenerationConfig, or None for none),
        with each override replacing the field of the same name; an override of None keeps
        the checkpoint's value, and a field neither sets is transformers' default."""
        unknown = sorted(set(overrides) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown DiffusionGemma setting(s) {unknown}; expected some of {list(cls.names())}")
        defaults = _transformers_defaults()
        values: dict[str, Any] = {}
        for name in cls.names():
            if overrides.get(name) is not None:
                values[name] = overrides[name]
            elif name == "entropy_bound":
                sampler = getattr(gen_config, "sampler_config", None) or defaults["sampler_config"]
                values[name] = sampler.entropy_bound
            else:
                own = getattr(gen_config, name, None)
                values[name] = defaults[name] if own is None else own
        return cls(**values, canvas_length=canvas_length)

    # ------------------------------------------------------------------ what the pipeline reads
    @property
    def canvases(self) -> int:
        return math.ceil(self.max_new_tokens / self.canvas_length)

    @property
    def gen_length(self) -> int:
        """The most tokens a row can return: whole canvases."""
        return self.canvases * self.canvas_length

    @property
    def steps(self) -> int:
        """The steps of the full schedule: every canvas denoised for ``max_denoising_steps``."""
        return self.canvases * self.max_denoising_steps

    @property
    def max_steps(self) -> int:
        return self.steps

    def to_generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``DiffusionGemmaForBlockDiffusion.generate``."""
        from transformers import EntropyBoundSamplerConfig

        kw = self.as_record()
        kw["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=kw.pop("entropy_bound"))
        # transformers prefers a checkpoint's max_length over max_new_tokens == 256; clear it
        # so the recorded max_new_tokens is what bounds the generation.
        kw["max_length"] = None
        return kw

    def as_record(self) -> dict[str, Any]:
        """The decoding settings used (the generation_config fields, without canvas_length)."""
        out = asdict(self)
        del out["canvas_length"]
        return out
