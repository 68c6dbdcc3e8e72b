"""The policy log-probabilities the GRPO loss reads, per ``TCRConfig.estimator``.

- ``one_step`` (default, d1's diffu-GRPO): :func:`lm_eval_temporal.tcr.logprobs.completion_logprobs`,
  the whole completion masked and the prompt noised with ``p_mask_prompt``; every kept token
  weighs 1.
- ``trajectory``: :func:`lm_eval_temporal.tcr.trajectory.trajectory_logprobs`, each token at the
  canvas of the step that committed it, ``trajectory_steps`` steps drawn per completion and
  reweighted (``p_mask_prompt`` does not apply: the canvases are the ones the sampler saw).

Both draw from per-row seeds only, so the old and reference passes given the same seeds score
exactly what the live pass scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lm_eval_temporal.tcr.logprobs import completion_logprobs
from lm_eval_temporal.tcr.trajectory import sample_steps, trajectory_logprobs

__all__ = ["rollout_logprobs", "token_weights"]


def rollout_logprobs(model: torch.nn.Module, ro: Any, seeds: Sequence[int], cfg: Any, *, mask_id: int,
                     device: torch.device | str) -> torch.Tensor:
    """[B, G] log-probabilities of a :class:`~lm_eval_temporal.tcr.rollout.Rollout`'s completions."""
    prompt, attn, comp = ro.prompt_ids.to(device), ro.prompt_attention.to(device), ro.completion_ids.to(device)
    if cfg.estimator == "trajectory":
        return trajectory_logprobs(model, prompt, attn, comp, ro.commit_step.to(device), seeds, mask_id=mask_id,
                                   k=cfg.trajectory_steps, token_mask=ro.completion_mask.to(device),
                                   batch_size=cfg.logprob_batch_size)
    return completion_logprobs(model, prompt, attn, comp, seeds, mask_id=mask_id, p_mask_prompt=cfg.p_mask_prompt,
                               batch_size=cfg.logprob_batch_size)


def token_weights(ro: Any, seeds: Sequence[int], cfg: Any) -> torch.Tensor | None:
    """[B, G] per-token weights for the loss (None: every kept token weighs 1)."""
    if cfg.estimator != "trajectory":
        return None
    return sample_steps(ro.commit_step, ro.completion_mask, seeds, cfg.trajectory_steps).weight
