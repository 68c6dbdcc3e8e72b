"""TCR reward functions with TRL's signature: ``fn(prompts, completions, **kwargs) -> list[float]``.

Keyword arguments carry one entry per completion (TRL passes dataset columns that way):
``step_answers`` (the answer parsed at every denoising step), ``gold`` (normalised gold answer)
and ``task`` (the answer parser; a string or a per-completion list). Every function returns the
*unweighted* reward; weights are applied by :func:`combine` (TRL's ``reward_weights``), so the
same functions plug into TRL unchanged.

- ``tse_reward``: ``-TSE`` (temporal semantic entropy of the per-step answers; paper weight 2.0).
- ``accuracy_reward``: 1 if the final completion's answer is correct, else 0.
- ``format_reward``: 1 if the task's parser finds an answer in the completion, else 0.
- ``confidence_reward``: a proper scoring rule of the confidence ``c = 1 - TSE / log2(steps)``
  against correctness (spherical by default, brier, logarithmic), so that the model is
  rewarded for being temporally consistent when right and inconsistent when wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from dataclasses import dataclass
from typing import Any

from lm_eval_temporal import answers, temporal

__all__ = [
    "RewardFn",
    "tse_values",
    "tse_reward",
    "accuracy_reward",
    "format_reward",
    "confidence_from_tse",
    "scoring_rule",
    "confidence_reward",
    "WeightedReward",
    "build_rewards",
    "combine",
]

RewardFn = Callable[..., list[float]]

# The logarithmic rule is -inf for a confident wrong answer; clip the probability so one
# rollout cannot dominate the group mean.
LOG_RULE_FLOOR = 1e-4


def _per_item(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, str) or value is None:
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name}: {len(value)} values for {n} completions")
    return value


def tse_values(
    step_answers: Sequence[Sequence[str | None]],
    task: str | Sequence[str],
    *,
    tse_alpha: float = 12.8,
    tse_skip: float = 0.5,
    cluster: str = "equivalence",
) -> list[float]:
    """TSE (bits) of each completion's per-step answers, with the official training defaults."""
    tasks = _per_item(task, len(step_answers), "task")
    return [
        float(
            temporal.temporal_semantic_entropy(
                list(sa), weighting="exp", alpha=tse_alpha, skip_ratio=tse_skip, equivalent=answers.equivalence(t, cluster)
            )
        )
        for sa, t in zip(step_answers, tasks)
    ]


def tse_reward(
    prompts: Sequence[Any],
    completions: Sequence[str],
    *,
    step_answers: Sequence[Sequence[str | None]],
    task: str | Sequence[str],
    tse_alpha: float = 12.8,
    tse_skip: float = 0.5,
    cluster: str = "equivalence",
    **_: Any,
) -> list[float]:
    """``-TSE`` per completion: 0 when every kept step agrees, more negative the more it wavers."""
    return [-v for v in tse_values(step_answers, task, tse_alpha=tse_alpha, tse_skip=tse_skip, cluster=cluster)]


def _correct(completions: Sequence[str], gold: Sequence[Any], task: str | Sequence[str]) -> list[bool]:
    golds = _per_item(gold, len(completions), "gold") if not isinstance(gold, str) else [gold] * len(completions)
    tasks = _per_item(task, len(completions), "task")
    return [bool(answers.is_correct(c, g, t)) for c, g, t in zip(completions, golds, tasks)]


def accuracy_reward(
    prompts: Sequence[Any], completions: Sequence[str], *, gold: Sequence[Any], task: str | Sequence[str], **_: Any
) -> list[float]:
    """1.0 when the completion's final answer equals the gold answer, else 0.0."""
    return [float(ok) for ok in _correct(completions, gold, task)]


def format_reward(
    prompts: Sequence[Any], completions: Sequence[str], *, task: str | Sequence[str], **_: Any
) -> list[float]:
    """1.0 when the task's answer parser finds an answer in the completion, else 0.0."""
    tasks = _per_item(task, len(completions), "task")
    return [float(answers.extract_answer(c, t) is not None) for c, t in zip(completions, tasks)]


def confidence_from_tse(tse: float, steps: int) -> float:
    """``c = 1 - TSE / log2(steps)``, clipped to [0, 1] (1 for a single step)."""
    if steps <= 1:
        return 1.0
    return min(1.0, max(0.0, 1.0 - tse / math.log2(steps)))


def scoring_rule(confidence: float, correct: bool, rule: str = "spherical") -> float:
    """Positively oriented proper scoring rule of the forecast "correct with probability c".

    - spherical: ``p_y / sqrt(c^2 + (1-c)^2)`` -- 1 at the right corner, 0 at the wrong one.
    - brier: ``1 - (y - c)^2`` -- 1 at the right corner, 0 at the wrong one.
    - logarithmic: ``ln(max(p_y, 1e-4))`` -- 0 at the right corner, ln(1e-4) at the wrong one.

    where ``y`` is 1 when correct and ``p_y`` the probability given to what happened."""
    c = min(1.0, max(0.0, float(confidence)))
    y = 1.0 if correct else 0.0
    p_y = c if correct else 1.0 - c
    if rule == "spherical":
        return p_y / math.sqrt(c * c + (1.0 - c) ** 2)
    if rule == "brier":
        return 1.0 - (y - c) ** 2
    if rule == "logarithmic":
        return math.log(max(p_y, LOG_RULE_FLOOR))
    raise ValueError(f"scoring rule {rule!r}: expected spherical, brier or logarithmic")


def confidence_reward(
    prompts: Sequence[Any],
    completions: Sequence[str],
    *,
    step_answers: Sequence[Sequence[str | None]],
    gold: Sequence[Any],
    task: str | Sequence[str],
    scoring: str = "spherical",
    tse_alpha: float = 12.8,
    tse_skip: float = 0.5,
    cluster: str = "equivalence",
    **_: Any,
) -> list[float]:
    """Scoring rule of ``c = 1 - TSE/log2(steps)`` against the completion's correctness."""
    tses = tse_values(step_answers, task, tse_alpha=tse_alpha, tse_skip=tse_skip, cluster=cluster)
    ok = _correct(completions, gold, task)
    return [
        scoring_rule(confidence_from_tse(t, len(sa)), c, scoring) for t, sa, c in zip(tses, step_answers, ok)
    ]


@dataclass(frozen=True)
class WeightedReward:
    name: str
    fn: RewardFn
    weight: float


def build_rewards(cfg: Any) -> list[WeightedReward]:
    """The reward functions named in ``cfg.rewards``, bound to the config's TSE and scoring settings."""
    tse_kw = dict(tse_alpha=cfg.tse_alpha, tse_skip=cfg.tse_skip, cluster=cfg.cluster)
    table: dict[str, tuple[RewardFn, float]] = {
        "tse": (partial(tse_reward, **tse_kw), cfg.tse_weight),
        "accuracy": (accuracy_reward, cfg.accuracy_weight),
        "format": (format_reward, cfg.format_weight),
        "confidence": (partial(confidence_reward, scoring=cfg.scoring_rule, **tse_kw), cfg.confidence_weight),
    }
    out = []
    for name in cfg.rewards:
        if name not in table:
            raise ValueError(f"unknown reward {name!r}; accepted: {', '.join(table)}")
        fn, w = table[name]
        out.append(WeightedReward(name, fn, float(w)))
    return out


def combine(
    rewards: Sequence[WeightedReward], prompts: Sequence[Any], completions: Sequence[str], **kwargs: Any
) -> tuple[list[float], dict[str, list[float]]]:
    """(weighted total per completion, unweighted parts by reward name)."""
    parts = {r.name: [float(v) for v in r.fn(prompts, completions, **kwargs)] for r in rewards}
    for name, vals in parts.items():
        if len(vals) != len(completions):
            raise ValueError(f"reward {name!r} returned {len(vals)} values for {len(completions)} completions")
    total = [sum(r.weight * parts[r.name][i] for r in rewards) for i in range(len(completions))]
    return total, parts
