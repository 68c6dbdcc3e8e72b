"""Per-token log-probabilities of completions under a masked-diffusion model (diffu-GRPO's
estimator, TCR's ``estimator: one_step``; the other, ``trajectory``, is in :mod:`.trajectory`).

One forward pass per estimate: the whole completion is masked and every real prompt token is
masked independently with probability ``p_mask_prompt``; ``logp[i] = log_softmax(logits)[token]``
at each completion position. The prompt masks come from a per-row ``torch.Generator`` seeded by
that row's seed over the row's real (unpadded) prompt tokens only, so a row's estimate depends on
its tokens and its seed alone -- not on the global RNG, its batch neighbours or their padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["prompt_noise_mask", "masked_inputs", "completion_logprobs", "generation_logits", "target_logprobs"]


def generation_logits(model: torch.nn.Module, x: torch.Tensor, attention_mask: torch.Tensor, gen_length: int) -> torch.Tensor:
    """[B, gen_length, V] logits of the last ``gen_length`` positions of ``x``.

    Models that can (LLaDA, through peft) apply the LM head to those positions only: the
    prompt's logits are never read, and at LLaDA-8B's vocabulary they are the largest tensor."""
    from lm_eval_temporal.sampler import forward_accepts

    keep = {"logits_to_keep": gen_length} if forward_accepts(model, "logits_to_keep") else {}
    return model(input_ids=x, attention_mask=attention_mask, **keep).logits[:, -gen_length:]


def target_logprobs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """float32 ``log_softmax(logits)[target]`` over the last axis.

    Only the target's entry is taken, so no second [..., V] tensor is kept for backward."""
    logits = logits.float()
    return logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def prompt_noise_mask(prompt_attention: torch.Tensor, seeds: Sequence[int], p: float) -> torch.Tensor:
    """[B, P] bool: which real prompt tokens to mask, drawn per row from its own seed.

    Prompts are left-padded, so the row's real tokens are its last ``n`` positions; the draws
    are made for those ``n`` tokens in order, which keeps a row's mask the same under any
    amount of extra padding."""
    B, P = prompt_attention.shape
    if len(seeds) != B:
        raise ValueError(f"need one seed per row: {len(seeds)} seeds for {B} rows")
    out = torch.zeros(B, P, dtype=torch.bool)
    if p <= 0:
        return out.to(prompt_attention.device)
    real = prompt_attention.bool().cpu()
    for b in range(B):
        n = int(real[b].sum())
        if n == 0:
            continue
        if not bool(real[b, P - n :].all()):
            raise ValueError("prompts must be left-padded (attention mask 0...0 1...1)")
        g = torch.Generator(device="cpu").manual_seed(int(seeds[b]))
        out[b, P - n :] = torch.rand(n, generator=g) < p
    return out.to(prompt_attention.device)


def masked_inputs(
    prompt_ids: torch.Tensor,
    prompt_attention: torch.Tensor,
    completion_ids: torch.Tensor,
    seeds: Sequence[int],
    *,
    mask_id: int,
    p_mask_prompt: float = 0.15,
) -> torch.Tensor:
    """[B, P + G] model input: noised prompt followed by a fully masked completion."""
    noise = prompt_noise_mask(prompt_attention, seeds, p_mask_prompt)
    prompt = torch.where(noise, torch.full_like(prompt_ids, mask_id), prompt_ids)
    return torch.cat([prompt, torch.full_like(completion_ids, mask_id)], dim=1)


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_attention: torch.Tensor,
    completion_ids: torch.Tensor,
    seeds: Sequence[int],
    *,
    mask_id: int,
    p_mask_prompt: float = 0.15,
    batch_size: int | None = None,
) -> torch.Tensor:
    """[B, G] float32 log-probabilities of ``completion_ids`` given the (noised) prompts.

    Differentiable when called with gradients enabled; ``batch_size`` splits the forward
    passes (rows are independent, so the result does not depend on it)."""
    B, G = completion_ids.shape
    x = masked_inputs(prompt_ids, prompt_attention, completion_ids, seeds, mask_id=mask_id, p_mask_prompt=p_mask_prompt)
    attn = torch.cat([prompt_attention, torch.ones_like(completion_ids)], dim=1).to(prompt_ids.device)
    step = batch_size or B
    out = []
    for s in range(0, B, step):
        logits = generation_logits(model, x[s : s + step], attn[s : s + step], G)
        out.append(target_logprobs(logits, completion_ids[s : s + step]))
    return torch.cat(out, dim=0)
