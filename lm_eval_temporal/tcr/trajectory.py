"""Trajectory-aware policy likelihood of a masked-diffusion rollout (``estimator: trajectory``).

The sampler commits every completion token ``i`` at one denoising step ``c_i`` (the rollout's
``commit_step``); the canvas it saw at step ``s`` is the prompt (as given, never noised) plus
the tokens committed before ``s``, the mask token everywhere else. The likelihood of the
sampled trajectory is, summed over the steps,

    L = sum_s sum_{i: c_i = s} log p(x_i | canvas_s),

so every token has exactly one conditional: the canvas of the step that committed it. Unlike
d1's one-step estimator (whole completion masked), this scores the partly unmasked canvases on
which answers oscillate, which is what the TSE reward is about.

Estimate (Horvitz-Thompson over steps, simple random sampling without replacement): for each
row, the candidate steps are the ``n`` distinct commit steps of its kept tokens (a step that
committed only padding past the first stop token has no term to estimate); ``k = min(K, n)``
of them are drawn uniformly without replacement by ``torch.randperm`` on a generator seeded
with the row's own seed. A token committed at a drawn step gets weight ``n / k``, every other
token weight 0. Each step is drawn with probability ``k / n``, so every token's expected weight
is exactly 1 and ``sum_i w_i log p(x_i | canvas_{c_i})`` is unbiased for ``L`` (``K >= n`` gives
``L`` itself, weights 1). One forward pass per drawn (row, step) pair: ``K`` times the
one-step estimator's cost.

In the GRPO loss (:func:`lm_eval_temporal.tcr.loss.grpo_loss`) the terms stay per token: token
``i``'s ratio is ``exp(logp_i - old_logp_i)`` at its own commit canvas and its clipped and KL
terms are multiplied by ``w_i``. The loss is linear in those terms and the normalisers are
token counts fixed by the rollout, so the estimated loss is unbiased for the loss computed on
every step's canvas; per-step ratios (a product over a step's tokens) would instead clip whole
steps at once. Old and reference log-probs use the same seeds, hence the same drawn steps.

What is not modelled, as in d1: which positions the remasking rule chose to commit, the
sampling temperature and classifier-free guidance; only the committed tokens' values are
scored, under the plain model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lm_eval_temporal.tcr.logprobs import generation_logits, target_logprobs

__all__ = ["StepPlan", "sample_steps", "step_canvases", "trajectory_logprobs"]


@dataclass
class StepPlan:
    """The drawn steps of a batch, as (row, step) pairs in row order, steps ascending."""

    rows: torch.Tensor  # [N] long: the completion each pair belongs to
    steps: torch.Tensor  # [N] long: the drawn denoising step
    weight: torch.Tensor  # [B, G] float32: n/k on tokens committed at a drawn step, else 0

    def __len__(self) -> int:
        return int(self.rows.numel())


def _kept(commit_step: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    if token_mask is None:
        return torch.ones_like(commit_step, dtype=torch.bool)
    if token_mask.shape != commit_step.shape:
        raise ValueError(f"token_mask {tuple(token_mask.shape)} does not match commit_step {tuple(commit_step.shape)}")
    return token_mask.bool()


def sample_steps(commit_step: torch.Tensor, token_mask: torch.Tensor | None, seeds: Sequence[int], k: int) -> StepPlan:
    """Draw ``min(k, n_b)`` of row b's ``n_b`` candidate steps from the row's seed alone.

    The draw reads nothing but the row's commit steps, kept tokens and seed, so a row gets the
    same steps in any batch, in any order, on any device."""
    if k < 1:
        raise ValueError(f"k={k}: draw at least one step per completion")
    B, G = commit_step.shape
    if len(seeds) != B:
        raise ValueError(f"need one seed per row: {len(seeds)} seeds for {B} rows")
    cs = commit_step.detach().long().cpu()
    kept = _kept(cs, token_mask).cpu()
    if bool((cs[kept] < 0).any()):
        raise ValueError("commit_step < 0 on a kept token: the rollout did not record when it was committed")
    rows, steps = [], []
    weight = torch.zeros(B, G, dtype=torch.float32)
    for b in range(B):
        cand = torch.unique(cs[b][kept[b]])  # sorted
        n = int(cand.numel())
        if n == 0:
            continue
        kb = min(k, n)
        g = torch.Generator(device="cpu").manual_seed(int(seeds[b]))
        drawn = cand[torch.randperm(n, generator=g)[:kb]].sort().values
        weight[b] = torch.where(torch.isin(cs[b], drawn) & kept[b], n / kb, 0.0)
        rows.append(torch.full((kb,), b, dtype=torch.long))
        steps.append(drawn)
    empty = torch.zeros(0, dtype=torch.long)
    return StepPlan(torch.cat(rows) if rows else empty, torch.cat(steps) if steps else empty,
                    weight.to(commit_step.device))


def step_canvases(
    prompt_ids: torch.Tensor,
    completion_ids: torch.Tensor,
    commit_step: torch.Tensor,
    rows: torch.Tensor,
    steps: torch.Tensor,
    *,
    mask_id: int,
) -> torch.Tensor:
    """[N, P + G]: for each (row, step) pair, the row's prompt and the tokens it had committed
    before that step, the mask token elsewhere (what the sampler's forward pass at that step saw)."""
    rows = rows.to(completion_ids.device)
    before = commit_step.to(completion_ids.device)[rows] < steps.to(completion_ids.device)[:, None]
    comp = torch.where(before, completion_ids[rows], torch.full_like(completion_ids[rows], mask_id))
    return torch.cat([prompt_ids[rows], comp], dim=1)


def trajectory_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_attention: torch.Tensor,
    completion_ids: torch.Tensor,
    commit_step: torch.Tensor,
    seeds: Sequence[int],
    *,
    mask_id: int,
    k: int,
    token_mask: torch.Tensor | None = None,
    batch_size: int | None = None,
    plan: StepPlan | None = None,
) -> torch.Tensor:
    """[B, G] float32 ``log p(x_i | canvas_{c_i})`` for the tokens committed at a drawn step, 0
    for every other token (pair it with ``sample_steps(...).weight``, which is 0 there).

    ``batch_size`` is the number of (row, step) pairs per forward pass (default: all of them);
    pairs are independent, so the result does not depend on it. Differentiable when called with
    gradients enabled. ``plan`` (from :func:`sample_steps` with the same arguments) saves the
    draw when the caller already has it."""
    B, G = completion_ids.shape
    dev = completion_ids.device
    kept = _kept(commit_step, token_mask).to(dev)
    if plan is None:
        plan = sample_steps(commit_step, kept, seeds, k)
    cs = commit_step.to(dev).long()
    out = torch.zeros(B, G, dtype=torch.float32, device=dev)
    attn_all = prompt_attention.to(dev)
    step = batch_size or max(1, len(plan))
    for s in range(0, len(plan), step):
        rows, steps = plan.rows[s : s + step].to(dev), plan.steps[s : s + step].to(dev)
        x = step_canvases(prompt_ids, completion_ids, cs, rows, steps, mask_id=mask_id)
        attn = torch.cat([attn_all[rows], torch.ones(len(rows), G, dtype=attn_all.dtype, device=dev)], dim=1)
        logits = generation_logits(model, x, attn, G)
        # Only the tokens this step committed are scored: the log-softmax runs on those rows
        # of the logits alone (a few per step), not on all G positions of every pair.
        scored = (cs[rows] == steps[:, None]) & kept[rows]
        lp = target_logprobs(logits[scored], completion_ids[rows][scored])
        where_row = rows[:, None].expand(-1, G)[scored]
        where_pos = torch.arange(G, device=dev)[None, :].expand(len(rows), -1)[scored]
        # Out of place, so autograd sees it; each token is scored at most once (its own step).
        out = out.index_put((where_row, where_pos), lp, accumulate=True)
    return out
