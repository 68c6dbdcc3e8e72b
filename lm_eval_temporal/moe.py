"""Mixture-of-experts routing, written once for the package's MoE models.

A router scores every token against every expert; :func:`softmax_topk` picks each token's
``k`` experts and their weights, and :func:`mix_experts` runs each expert on the tokens sent
to it and adds its weighted output back per token. Tokens are independent: a token's output
never depends on the other tokens of its batch (what makes batched rows equal unbatched ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["softmax_topk", "mix_experts"]


def softmax_topk(router_logits: torch.Tensor, k: int, expert_bias: torch.Tensor | None = None,
                 normalise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [N, k], experts [N, k]) of tokens' router logits [N, E].

    The softmax runs in (at least) float32: bf16 probabilities would tie and flip the top-k choice.
    ``expert_bias`` [E] is added to the probabilities before the top-k and stays in the
    chosen weights (the OLMoE-derived LLaDA-MoE does so); ``normalise`` rescales the k weights
    of a token to sum to one."""
    probs = F.softmax(router_logits, dim=-1, dtype=torch.promote_types(router_logits.dtype, torch.float32))
    if expert_bias is not None:
        probs = probs + expert_bias
    weights, experts = torch.topk(probs, k, dim=-1)
    if normalise:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, experts


def mix_experts(x: torch.Tensor, experts: nn.ModuleList, weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """sum_j weights[n, j] * experts[chosen[n, j]](x[n]) for tokens ``x`` [N, D], in ``x.dtype``.

    Experts run in index order, each on its tokens only, and their outputs are added with
    ``index_add_``: the order of additions of the reference implementations, so that bf16
    results match them bit for bit."""
    weights = weights.to(x.dtype)
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        token, slot = torch.where(chosen == e)
        if token.numel():
            out.index_add_(0, token, expert(x[token]) * weights[token, slot, None])
    return out
