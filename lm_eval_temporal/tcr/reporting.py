"""What a TCR run reports: the trackers it logs to and the per-round reward statistics."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from lm_eval_temporal.tcr.config import TCRConfig
from lm_eval_temporal.tcr.rollout import Rollout

__all__ = ["METRICS_FILE", "trackers", "round_stats"]

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


def trackers(cfg: TCRConfig) -> list[str]:
    """Accelerate trackers to use: TensorBoard / W&B only where installed (and, for an
    implicit W&B, configured through its environment variables)."""
    import importlib.util

    wanted = set(cfg.report_to)
    have_tb = importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None
    have_wandb = importlib.util.find_spec("wandb") is not None
    out = []
    if "tensorboard" in wanted or "auto" in wanted:
        if have_tb:
            out.append("tensorboard")
        elif "tensorboard" in wanted:
            log.warning("report_to includes tensorboard but it is not installed; logging to %s only", METRICS_FILE)
    if "wandb" in wanted or "auto" in wanted:
        configured = any(os.environ.get(k) for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT"))
        if have_wandb and ("wandb" in wanted or configured):
            out.append("wandb")
        elif "wandb" in wanted:
            log.warning("report_to includes wandb but it is not installed; logging to %s only", METRICS_FILE)
    return out


def round_stats(accelerator: Any, names: list[str], micro: list[Rollout], parts: list[dict[str, list[float]]],
                totals: list[list[float]]) -> dict:
    """Means over all completions of the round on all processes: reward (and each named part),
    TSE, accuracy, completion length, reward std and the share of groups with zero spread."""
    vals: dict[str, list[float]] = {"reward": [], "tse": [], "accuracy": [], "completion_tokens": []}
    for n in names:
        vals[f"reward/{n}"] = []
    zero_std, groups = 0, 0
    for ro, pt, tot in zip(micro, parts, totals):
        vals["reward"] += tot
        for n in names:
            vals[f"reward/{n}"] += pt[n]
        vals["tse"] += [r.tse for r in ro.records]
        if "accuracy" in pt:
            vals["accuracy"] += pt["accuracy"]
        else:
            from lm_eval_temporal.tcr.rewards import accuracy_reward

            vals["accuracy"] += accuracy_reward(ro.prompts, ro.completions, **ro.reward_kwargs())
        vals["completion_tokens"] += ro.completion_mask.sum(1).float().tolist()
        g = torch.tensor(tot).view(-1, ro.group_size)
        zero_std += int((g.std(1) == 0).sum()) if ro.group_size > 1 else len(g)
        groups += len(g)
    keys = sorted(vals)
    sq = sum(v * v for v in vals["reward"])
    sums = torch.tensor([sum(vals[k]) for k in keys] + [len(vals["reward"]), zero_std, groups, sq],
                        dtype=torch.float64, device=accelerator.device)
    sums = accelerator.reduce(sums, reduction="sum")
    k = len(keys)
    n = float(sums[k])
    out = {key: float(sums[i]) / n for i, key in enumerate(keys)}
    var = max(0.0, float(sums[k + 3]) / n - out["reward"] ** 2)
    out["reward_std"] = var ** 0.5  # over all completions of the round, all processes
    out["frac_zero_std_groups"] = float(sums[k + 1]) / max(1.0, float(sums[k + 2]))
    return out
