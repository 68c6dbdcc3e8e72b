"""Group-relative advantages (GRPO): each completion's reward minus its group's mean."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["group_advantages"]


def group_advantages(
    rewards: torch.Tensor | Sequence[float], group_size: int, *, scale: bool = False, eps: float = 1e-4
) -> torch.Tensor:
    """Advantages for rewards laid out group after group (``group_size`` consecutive rows per prompt).

    ``A = r - mean(group)``; with ``scale`` also divided by ``std(group) + eps`` (unbiased std,
    as TRL). The paper's TCR does not scale: the -TSE reward's spread already carries meaning,
    and dividing by a near-zero std would blow up nearly unanimous groups.
    """
    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()
    if group_size < 1 or r.numel() % group_size:
        raise ValueError(f"{r.numel()} rewards do not split into groups of {group_size}")
    g = r.view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if scale:
        std = g.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(g[:, :1])
        adv = adv / (std + eps)
    return adv.flatten()
