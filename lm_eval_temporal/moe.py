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

__all__ = ["SwiGLU", "softmax_topk", "sigmoid_group_topk", "mix_experts"]


class SwiGLU(nn.Module):
    """``down_proj(act(gate_proj(x)) * up_proj(x))``: the feed-forward of the Qwen-style carried
    models (Dream, LLaDA-MoE, LLaDA2), and each expert and shared expert of their MoE layers."""

    def __init__(self, d_model: int, hidden: int, act=F.silu):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


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


def mix_experts(x: torch.Tensor, experts: nn.ModuleList, weights: torch.Tensor, chosen: torch.Tensor,
                sum_dtype: torch.dtype | None = None) -> torch.Tensor:
    """sum_j weights[n, j] * experts[chosen[n, j]](x[n]) for tokens ``x`` [N, D], in ``x.dtype``.

    Experts run in index order, each on its tokens only, and their outputs are added with
    ``index_add_``: the order of additions of the reference implementations, so that bf16
    results match them bit for bit. ``sum_dtype``: weigh and add in that dtype, then cast
    (LLaDA2's hub code weighs the bf16 expert outputs with float32 weights and sums in float32)."""
    dtype = sum_dtype or x.dtype
    weights = weights.to(dtype)
    out = torch.zeros_like(x, dtype=dtype)
    for e, expert in enumerate(experts):
        token, slot = torch.where(chosen == e)
        if token.numel():
            out.index_add_(0, token, expert(x[token]).to(dtype) * weights[token, slot, None])
    return out.to(x.dtype)


def sigmoid_group_topk(router_logits: torch.Tensor, k: int, n_group: int, topk_group: int,
                       expert_bias: torch.Tensor | None, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [N, k], experts [N, k]) by LLaDA2's group-limited sigmoid routing (DeepSeek-V3 style).

    Scores are sigmoids in float32; ``expert_bias`` is added for the choice only (not to the
    weights). Experts form ``n_group`` groups, a group scores the sum of its two best experts,
    and a token picks its k experts within its ``topk_group`` best groups. The chosen scores
    are normalised to sum to one (when k > 1) and multiplied by ``scale``."""
    scores = torch.sigmoid(router_logits.float())
    choice = scores if expert_bias is None else scores + expert_bias
    N, E = choice.shape
    group_scores = choice.view(N, n_group, -1).topk(2, dim=-1).values.sum(dim=-1)
    groups = torch.topk(group_scores, topk_group, dim=-1, sorted=False).indices
    keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter(1, groups, True)
    keep = keep[:, :, None].expand(N, n_group, E // n_group).reshape(N, E)
    experts = torch.topk(choice.masked_fill(~keep, float("-inf")), k, dim=-1).indices
    weights = scores.gather(1, experts)
    if k > 1:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * scale, experts
