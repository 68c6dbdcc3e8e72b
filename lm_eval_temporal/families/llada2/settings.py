"""LLaDA2.x decoding settings (the arguments of the hub's ``LLaDA2MoeModelLM.generate``),
checked by the package's one rule per field (:mod:`lm_eval_temporal.coerce`). Torch-free.

Official defaults: the LLaDA2.0-mini / LLaDA2.1-mini model cards' usage and the
``generate`` signature of the hub's ``modeling_llada2_moe.py`` (readable copies in
ZHZisZZ/dllm ``dllm/pipelines/llada2`` and ``llada21``, whose samplers use the same values):
``block_length=32``, ``steps=32`` (per block), ``threshold=0.95``, ``temperature=0``,
``minimal_topk=1``, ``eos_early_stop`` off. ``gen_length`` is the task's ``max_gen_toks``.
LLaDA2.1's editing decoding (its hub ``generate``) runs when ``editing_threshold`` is set
(2.1's default there: 0.9, with ``max_post_steps=16`` and ``num_to_transfer=1``). The config
of a 2.1 checkpoint does not tell it from 2.0, so the checkpoint's name does: a hub id or
folder whose name holds ``LLaDA2.1`` (any case; ``LLaDA2_1``, ``llada2-1`` too) decodes with
2.1's editing unless ``editing_threshold`` is given (:func:`is_llada21`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import PurePath

from lm_eval_temporal.coerce import check_fields, option

__all__ = ["OFFICIAL", "OFFICIAL_21", "LLaDA2Settings", "is_llada21"]

OFFICIAL = {"block_length": 32, "steps": 32, "threshold": 0.95, "temperature": 0.0, "eos_early_stop": False}
OFFICIAL_21 = {"editing_threshold": 0.9, "max_post_steps": 16}  # LLaDA2.1's generate, on top of OFFICIAL


def is_llada21(checkpoint: str | None) -> bool:
    """Whether a checkpoint's hub id or folder is named as a LLaDA2.1 one (its last path part)."""
    return bool(checkpoint) and re.search(r"llada2[._-]1", PurePath(str(checkpoint)).name, re.IGNORECASE) is not None


@dataclass(frozen=True)
class LLaDA2Settings:
    """One run's settings of LLaDA2's block decoding (names as in the hub's ``generate``).

    Per block at most ``steps`` forward passes (capped at ``gen_length // minimal_topk``); a
    step commits every masked position of the block whose probability exceeds ``threshold``,
    or, when fewer than the even schedule's share, the schedule's share of the most confident
    ones. Blocks finish early, so the number of steps depends on the data
    (``fixed_schedule = False``: the horizon T is the steps run)."""

    gen_length: int = option(lo=1)
    steps: int = option(OFFICIAL["steps"], lo=1)
    block_length: int = option(OFFICIAL["block_length"], lo=1)
    threshold: float = option(OFFICIAL["threshold"], lo=0.0, hi=1.0)
    temperature: float = option(OFFICIAL["temperature"], lo=0.0)
    eos_early_stop: bool = OFFICIAL["eos_early_stop"]
    minimal_topk: int = option(1, lo=1)
    editing_threshold: float | None = option(None, lo=0.0, hi=1.0)  # None: LLaDA2.0 decoding, no editing
    max_post_steps: int = option(16, lo=0)  # 2.1: steps of a block after its last mask
    num_to_transfer: int = option(1, lo=1)  # 2.1: the least commits of a step with masks left

    fixed_schedule = False  # the pipeline's question: is the number of steps known before decoding?

    def __post_init__(self):
        for name in ("temperature", "threshold", "editing_threshold"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        check_fields(self)

    @property
    def steps_per_block(self) -> int:
        """The hub's cap: ``min(steps, gen_length // minimal_topk)``."""
        return max(1, min(self.steps, self.gen_length // self.minimal_topk))

    @property
    def max_steps(self) -> int:
        """An upper bound of the steps of a row (every block the generation can touch, at its cap)."""
        blocks = -(-self.gen_length // self.block_length) + 1
        if self.editing_threshold is not None:  # masks, then edits: bounded by the post steps
            return blocks * (self.block_length + self.max_post_steps + 1)
        return blocks * self.steps_per_block

    @property
    def samples(self) -> bool:
        return self.temperature > 0

    def as_record(self) -> dict:
        return asdict(self)
