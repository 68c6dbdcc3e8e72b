"""Which masked positions a sampler step may commit, and how many per row.

A schedule policy answers three questions at every step of ``sampler.generate``, for the
rows still running: where each row's current block starts (its candidates are the masked
positions of that block), how many of them each row commits, and which rows are done.

- :class:`QuotaSchedule`: LLaDA's exact block schedule. All rows work on block
  ``step // steps_per_block``; a block's masked count, taken at its first step, is spread over
  its steps as evenly as possible (the first ``count % steps_per_block`` steps commit one more).
- :class:`ThresholdSchedule`: Fast-dLLM's confidence-aware parallel decoding. Each row works on
  the block holding its first masked position and commits every candidate whose confidence
  reaches the threshold (at least one); a row is done when nothing is masked.

Also here: :func:`block_confidence` and :func:`most_confident`, the confidence and the per-row
top-k both policies rank by. Torch only.
"""

from __future__ import annotations

import torch

from lm_eval_temporal.config import SamplerConfig

__all__ = ["QuotaSchedule", "ThresholdSchedule", "make_schedule", "block_confidence", "most_confident"]


class QuotaSchedule:
    """The exact schedule: every row in the same block, a fixed quota per step."""

    def __init__(self, steps_per_block: int, block_length: int):
        self.steps_per_block = steps_per_block
        self.block_length = block_length
        self.settled = 0  # generation positions before the current block: final in every row
        self._quota: tuple[torch.Tensor, torch.Tensor] | None = None  # (base, extra) per batch row

    def begin(self, step: int, masked: torch.Tensor) -> bool:
        """Called before every step with the whole batch's masked generation positions [B, G];
        True when ``step`` starts a block (whose quota is then set from ``masked``)."""
        if step % self.steps_per_block:
            return False
        self.settled = step // self.steps_per_block * self.block_length
        count = masked[:, self.settled : self.settled + self.block_length].sum(dim=1)
        self._quota = (count // self.steps_per_block, count % self.steps_per_block)
        return True

    def block_starts(self, masked: torch.Tensor) -> torch.Tensor:
        """The current block's first generation position, per running row ([n])."""
        return torch.full((masked.shape[0],), self.settled, dtype=torch.long, device=masked.device)

    def counts(self, step: int, conf: torch.Tensor, candidate: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """How many candidates each running row (``rows`` of the batch, None = all) commits."""
        base, extra = self._quota
        k = base + (step % self.steps_per_block < extra).long()
        return k if rows is None else k[rows]

    def finished(self, masked: torch.Tensor) -> torch.Tensor | None:
        """Rows done before their steps run out: none (the schedule's last step unmasks all)."""
        return None


class ThresholdSchedule:
    """Confidence-threshold parallel decoding: each row in its own block, data-dependent counts."""

    settled = 0  # rows leave blocks at different steps, so no prefix is final in every row

    def __init__(self, threshold: float, block_length: int):
        self.threshold = threshold
        self.block_length = block_length

    def begin(self, step: int, masked: torch.Tensor) -> bool:
        return False

    def block_starts(self, masked: torch.Tensor) -> torch.Tensor:
        """The block holding each row's first masked position ([n])."""
        return masked.int().argmax(dim=1) // self.block_length * self.block_length

    def counts(self, step: int, conf: torch.Tensor, candidate: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
        """Every candidate at or above the threshold, at least one."""
        return torch.minimum((conf >= self.threshold).sum(dim=1).clamp(min=1), candidate.sum(dim=1))

    def finished(self, masked: torch.Tensor) -> torch.Tensor:
        """A row is done when nothing is masked."""
        return ~masked.any(dim=1)


def make_schedule(cfg: SamplerConfig) -> QuotaSchedule | ThresholdSchedule:
    if cfg.parallel_threshold is None:
        return QuotaSchedule(cfg.steps_per_block, cfg.block_length)
    return ThresholdSchedule(cfg.parallel_threshold, cfg.block_length)


def block_confidence(logits: torch.Tensor, x0: torch.Tensor, starts: torch.Tensor, block_length: int,
                     off: int = 0) -> torch.Tensor:
    """softmax(logits)[x0] over each row's block (generation positions ``starts`` to
    ``starts + block_length``), -inf elsewhere; ``logits`` begin at generation position ``off``.
    A softmax of those rows alone is, bit for bit, the one over the whole span (rows are
    independent), for a fraction of the float32 [B, positions, V] it would materialise
    (exp(logit - logsumexp) is cheaper still but rounds differently, and a flipped near-tie
    changes tokens)."""
    idx = starts[:, None] + torch.arange(block_length, device=starts.device)  # [n, block_length]
    span = logits[torch.arange(idx.shape[0], device=idx.device)[:, None], idx - off]  # [n, block_length, V]
    dt = torch.promote_types(logits.dtype, torch.float32)
    p = torch.softmax(span.to(dt), dim=-1).gather(-1, x0.gather(1, idx)[:, :, None]).squeeze(-1)
    return torch.full(x0.shape, -torch.inf, dtype=p.dtype, device=x0.device).scatter_(1, idx, p)


def most_confident(conf: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool [n, G]: the ``k[row]`` highest ``conf`` of each row (ties: the leftmost), by a
    stable descending sort (a per-row k, which ``topk`` does not take)."""
    order = conf.argsort(dim=1, descending=True, stable=True)
    ranks_kept = torch.arange(conf.shape[1], device=conf.device)[None, :] < k[:, None]
    return torch.zeros(conf.shape, dtype=torch.bool, device=conf.device).scatter_(1, order, ranks_kept)
