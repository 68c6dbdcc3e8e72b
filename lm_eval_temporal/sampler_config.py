"""The sampler's settings (:class:`SamplerConfig`) and the one check of a block schedule.

Torch-free, so option parsing (the backend's ``--model_args``, the TCR config) can validate a
schedule before torch or a model is loaded, with the same rule and words as the sampler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["REMASKING", "SamplerConfig", "schedule_error"]

REMASKING = ("low_confidence", "random")


def schedule_error(gen_length: int | None, steps: int | None, block_length: int | None) -> str | None:
    """What is wrong with a block schedule, or None. Values left as None are not checked, so a
    partly given schedule (the rest resolved later) is checked as far as it goes."""
    g, s, b = gen_length, steps, block_length
    if g and b and g % b:
        return f"gen_length={g}, block_length={b}: gen_length must be a multiple of block_length"
    if g and s and s > g:
        return f"steps={s}: expected 1 <= steps <= gen_length={g} (each step commits at least one token)"
    if g and b and s and s % (g // b):
        return (f"steps={s}: expected a multiple of the number of blocks "
                f"gen_length/block_length = {g}/{b} = {g // b}")
    return None


@dataclass(frozen=True)
class SamplerConfig:
    """The schedule and sampling settings of one ``sampler.generate`` call
    (``generate(model, ids, mask, **config.kwargs(), ...)``)."""

    gen_length: int
    steps: int
    block_length: int
    temperature: float = 0.0
    cfg_scale: float = 0.0
    remasking: str = "low_confidence"
    suppress_eos: bool = False

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> SamplerConfig:
        """Raise ValueError naming the offending argument and what it accepts; return self."""
        for name in ("gen_length", "steps", "block_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        err = schedule_error(self.gen_length, self.steps, self.block_length)
        if err:
            raise ValueError(err)
        if not float(self.temperature) >= 0.0:
            raise ValueError(f"temperature={self.temperature!r}: expected a number >= 0 (0 = greedy)")
        if not float(self.cfg_scale) >= 0.0:
            raise ValueError(f"cfg_scale={self.cfg_scale!r}: expected a number >= 0 (0 = no guidance)")
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking={self.remasking!r}: expected one of {', '.join(REMASKING)}")
        return self
