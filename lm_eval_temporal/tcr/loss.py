"""The diffu-GRPO objective: clipped importance ratio plus a k3 KL penalty, per completion token."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from lm_eval_temporal.tcr.config import LOSS_NORMALIZATIONS

__all__ = ["LossOutput", "completion_mask", "grpo_loss"]


def completion_mask(completion_ids: torch.Tensor, stop_ids: Iterable[int]) -> torch.Tensor:
    """[B, G] bool: the tokens up to and including the first stop token (all, if none).

    The stop token itself is kept: deciding *where* to stop is part of the answer, while the
    EOS padding after it is not (it would dominate short answers' average)."""
    stops = torch.tensor(sorted(set(stop_ids)), dtype=completion_ids.dtype, device=completion_ids.device)
    is_stop = torch.isin(completion_ids, stops)
    # Number of stop tokens strictly before each position; 0 means "not past the first stop".
    before = torch.cumsum(is_stop.long(), dim=1) - is_stop.long()
    return before == 0


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    kl: float  # mean k3 KL over kept tokens (0 when beta == 0 and no reference is given)
    clip_fraction: float  # share of kept tokens where the clipped term was the active one
    ratio_mean: float
    tokens: int


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float,
    beta: float,
    weights: torch.Tensor | None = None,
    normalization: str = "tokens",
) -> LossOutput:
    """Per token ``l = -min(r A, clip(r, 1-eps, 1+eps) A) + beta (exp(ref-logp) - (ref-logp) - 1)``
    with ``r = exp(logp - old_logp)``, then normalised:

    - ``normalization="tokens"`` (d1's diffu-GRPO, the default): ``sum(w l m) / sum(m)`` over
      the whole micro-batch, so every kept token weighs the same and long answers weigh more;
    - ``normalization="completion"``: ``mean_b(sum_g(w l m) / sum_g(m))``, each completion's
      average first, so long and short answers weigh the same (TRL's original GRPO).

    ``logp``, ``old_logp``, ``ref_logp`` are [B, G]; ``advantages`` is [B]; ``mask`` [B, G] bool
    (the kept tokens). ``weights`` [B, G] (default 1) multiplies each token's term, e.g. the
    trajectory estimator's n/k for tokens of drawn steps and 0 for the others; the normalisers
    count kept tokens, not weights, so an estimate with expected weight 1 per token is unbiased.
    The statistics are means over kept tokens, weighted by ``weights``.
    """
    if normalization not in LOSS_NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r}: expected one of {', '.join(LOSS_NORMALIZATIONS)}")
    m = mask.to(logp.dtype)
    w = m if weights is None else m * weights.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    a = advantages.to(logp.dtype)[:, None]
    unclipped = ratio * a
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * a
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1.0
        if beta:
            per_token = per_token + beta * kl
    if normalization == "tokens":
        loss = (per_token * w).sum() / m.sum().clamp(min=1.0)
    else:
        loss = ((per_token * w).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)).mean()
    n = w.sum().clamp(min=1e-12)
    with torch.no_grad():
        clip_active = (clipped < unclipped).to(logp.dtype)
        stats = (
            float((kl * w).sum() / n),
            float((clip_active * w).sum() / n),
            float((ratio * w).sum() / n),
        )
    return LossOutput(loss=loss, kl=stats[0], clip_fraction=stats[1], ratio_mean=stats[2], tokens=int(m.sum()))
