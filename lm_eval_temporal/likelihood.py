"""LLaDA's Monte-Carlo log-likelihood of a continuation, for multiple-choice tasks.

A masked-diffusion model has no left-to-right likelihood; LLaDA estimates log p(continuation |
context) from ``mc_num`` copies of the continuation, each with a uniformly random number k of
its L tokens masked, scoring the masked tokens' cross-entropy weighted by L / k (an unbiased
estimate of the ELBO). "Greedy" means the sampler decodes exactly the continuation from the
context in len(continuation) steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lm_eval_temporal.loading import LoadedModel
from lm_eval_temporal.sampler import generate, guided_logits

__all__ = ["mc_loglikelihood", "is_greedy"]


@torch.no_grad()
def mc_loglikelihood(
    lm: LoadedModel,
    context: Sequence[int],
    continuation: Sequence[int],
    *,
    mc_num: int,
    mc_batch_size: int,
    cfg_scale: float = 0.0,
    seed: int = 0,
) -> float:
    """The estimate for token ids ``context`` + ``continuation`` (masks drawn from ``seed``)."""
    dev = lm.device
    seq = torch.tensor(list(context) + list(continuation), dtype=torch.long, device=dev)
    P, L = len(context), len(continuation)
    g = torch.Generator(device="cpu").manual_seed(seed)
    total, done = 0.0, 0
    while done < mc_num:
        n = min(mc_batch_size, mc_num - done)
        k = torch.randint(1, L + 1, (n,), generator=g)
        rank = torch.rand(n, L, generator=g).argsort(1).argsort(1)
        masked = (rank < k[:, None]).to(dev)
        x = seq.repeat(n, 1)
        x[:, P:] = torch.where(masked, lm.mask_id, x[:, P:])
        logits = guided_logits(lm.model, x, None, prompt_length=P, cfg_scale=cfg_scale, mask_id=lm.mask_id)[:, P:]
        ce = F.cross_entropy(logits.float().transpose(1, 2), seq[P:].repeat(n, 1), reduction="none")
        total += ((ce * masked).sum(1) * (L / k.to(dev))).sum().item()
        done += n
    return -total / mc_num


def is_greedy(lm: LoadedModel, context: Sequence[int], continuation: Sequence[int], *, cfg_scale: float = 0.0) -> bool:
    """Whether greedy decoding of len(continuation) tokens, one per step, gives the continuation."""
    L = len(continuation)
    out = generate(lm.model, torch.tensor([list(context)], dtype=torch.long, device=lm.device),
                   gen_length=L, steps=L, block_length=L, cfg_scale=cfg_scale, mask_id=lm.mask_id)
    return out.sequences[0, len(context):].tolist() == list(continuation)
