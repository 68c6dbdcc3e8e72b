"""DiffusionGemma's decoding settings: the checkpoint's ``generation_config`` decoding fields,
overridable one by one under their own names, validated here so a bad model arg fails with
the argument's name before any model work, and recorded as used."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["DiffusionGemmaSettings"]


def _transformers_defaults() -> dict[str, Any]:
    """What transformers' ``generate`` uses for a field the checkpoint leaves unset (its
    ``DiffusionGemmaGenerationConfig._get_default_generation_params``, transformers 5.24):
    read from there, not copied, so the record states what actually ran."""
    from transformers import DiffusionGemmaGenerationConfig

    return DiffusionGemmaGenerationConfig._get_default_generation_params()


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"DiffusionGemma setting {name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _float(name: str, value: Any, *, positive: bool) -> float:
    # ints are accepted (model args such as t_min=0 arrive as ints); transformers itself
    # insists on floats for entropy_bound and confidence_threshold, hence the conversion.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"DiffusionGemma setting {name}: expected a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"DiffusionGemma setting {name}: expected a number {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DiffusionGemmaSettings:
    """One run's decoding settings (names as in transformers' DiffusionGemmaGenerationConfig;
    ``entropy_bound`` is its ``sampler_config.entropy_bound``).

    ``max_new_tokens`` is rounded up by transformers to whole canvases (``canvas_length``
    tokens each), so a row may return up to ``ceil(max_new_tokens / canvas_length)``
    canvases."""

    max_new_tokens: int
    max_denoising_steps: int
    t_min: float
    t_max: float
    entropy_bound: float
    stability_threshold: int
    confidence_threshold: float

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("max_new_tokens", _int("max_new_tokens", self.max_new_tokens, 1))
        set_("max_denoising_steps", _int("max_denoising_steps", self.max_denoising_steps, 1))
        set_("stability_threshold", _int("stability_threshold", self.stability_threshold, 0))
        set_("t_min", _float("t_min", self.t_min, positive=False))
        set_("t_max", _float("t_max", self.t_max, positive=False))
        set_("entropy_bound", _float("entropy_bound", self.entropy_bound, positive=True))
        set_("confidence_threshold", _float("confidence_threshold", self.confidence_threshold, positive=True))
        if self.t_max <= self.t_min:
            # the temperature falls from t_max (first step) to t_min (last step)
            raise ValueError(f"DiffusionGemma settings t_max / t_min: expected t_max > t_min, "
                             f"got t_max={self.t_max}, t_min={self.t_min}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_generation_config(cls, gen_config: Any, **overrides: Any) -> "DiffusionGemmaSettings":
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
                continue
            if name == "entropy_bound":
                sampler = getattr(gen_config, "sampler_config", None) or defaults["sampler_config"]
                values[name] = sampler.entropy_bound
            else:
                own = getattr(gen_config, name, None)
                values[name] = defaults[name] if own is None else own
        return cls(**values)

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
        return asdict(self)
