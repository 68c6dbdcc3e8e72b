"""Rollouts for TCR: G sampled completions per prompt through the temporal pipeline, with the
answer the model holds at every denoising step (what the TSE reward reads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lm_eval_temporal.config import SamplerConfig
from lm_eval_temporal.pipeline import TemporalPipeline
from lm_eval_temporal.record import TemporalRecord
from lm_eval_temporal.tcr.loss import completion_mask

__all__ = ["Rollout", "rollout"]


@dataclass
class Rollout:
    """One micro-batch of completions, ``group_size`` consecutive rows per prompt."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_attention: torch.Tensor  # [B, P] 1 = real token
    completion_ids: torch.Tensor  # [B, gen_length]
    completion_mask: torch.Tensor  # [B, gen_length] bool, up to and including the first stop token
    commit_step: torch.Tensor  # [B, gen_length] the denoising step at which each token was committed
    prompts: list[str]
    records: list[TemporalRecord]  # per completion: per-step answers, final text, TSE
    gold: list[Any]
    task: str
    group_size: int

    def __len__(self) -> int:
        return len(self.records)

    @property
    def completions(self) -> list[str]:
        return [r.final_text for r in self.records]

    @property
    def step_answers(self) -> list[list[str | None]]:
        return [r.answers for r in self.records]

    def reward_kwargs(self) -> dict[str, Any]:
        """The keyword arguments reward functions receive (TRL style: one entry per completion)."""
        return {"step_answers": self.step_answers, "gold": self.gold, "task": self.task}


@torch.no_grad()
def rollout(
    pipeline: TemporalPipeline,
    prompts: Sequence[str],
    gold: Sequence[Any],
    *,
    task: str,
    group_size: int,
    seeds: Sequence[int],
    sampler: SamplerConfig,
    batch_size: int | None = None,
) -> Rollout:
    """Sample ``group_size`` completions for each prompt (row ``i * group_size + k`` is the k-th
    completion of prompt i), seeded per row by ``seeds`` so rows do not depend on their batch."""
    rows = [p for p in prompts for _ in range(group_size)]
    if len(seeds) != len(rows):
        raise ValueError(f"need one seed per completion: {len(seeds)} seeds for {len(rows)} completions")
    run = pipeline.run(rows, sampler, task, seeds=seeds, batch_size=batch_size)
    return Rollout(
        prompt_ids=run.input_ids,
        prompt_attention=run.attention_mask,
        completion_ids=run.sequences,
        completion_mask=completion_mask(run.sequences, pipeline.decoder.stop_ids.tolist()),
        commit_step=run.commit_step,
        prompts=rows,
        records=run.records,
        gold=[g for g in gold for _ in range(group_size)],
        task=task,
        group_size=group_size,
    )
