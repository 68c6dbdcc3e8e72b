"""Early-stop policies: ``sampler.generate`` step callbacks that end a row before its schedule
does (``TemporalConfig.early_stop``; off by default).

- ``stable``: decode and parse every step as it is made; stop once the running vote's winner
  has held for ``stop_window`` steps with at least ``stop_share`` of the weight so far. The
  per-step texts and answers it parsed are kept, so the pipeline does not parse them again.
- ``confidence``: the Prophet-style baseline (arXiv 2508.19982): stop once the mean top-1/top-2
  logit gap over the row's still-masked positions clears the threshold of the current third
  of the horizon.

No row stops before ``stop_min`` of the horizon. The horizon is the T of the vote and TSE
(``config.horizon``): the schedule's ``steps``. Early stop needs it before decoding, so it
needs a fixed schedule and is refused where rows choose their number of steps
(``parallel_threshold``; ``config.early_stop_error``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from lm_eval_temporal import answers, temporal
from lm_eval_temporal.config import SamplerConfig, TemporalConfig, early_stop_error, horizon
from lm_eval_temporal.decode import StepDecoder, cut_at

__all__ = ["RowSteps", "Policy", "policy"]


@dataclass
class RowSteps:
    """Per-step texts and answers of one row, filled while it is generated."""

    texts: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    last: torch.Tensor | None = None  # the row's previous x0, cut at its first stop token


@dataclass
class Policy:
    """The ``generate`` arguments of a policy (``callback`` None: no callback at all) and, for
    ``stable``, the rows' already parsed steps."""

    callback: Callable | None = None
    callback_gap: bool = False
    rows: list[RowSteps] | None = None


def policy(cfg: TemporalConfig, sampler: SamplerConfig, decoder: StepDecoder, tasks: Sequence[str],
           stops: Sequence[Sequence[str]]) -> Policy:
    """The early-stop policy of ``cfg`` for a batch of rows sampled with ``sampler``, answer
    parsers ``tasks`` and stop strings ``stops``, over the horizon T of the vote and TSE
    (``config.horizon(sampler)``). ValueError when ``sampler`` has no fixed schedule."""
    if cfg.early_stop == "none":
        return Policy()
    # what lets the rows choose: LLaDA's parallel_threshold, or another family's decoder itself
    chooser = "parallel_threshold" if isinstance(sampler, SamplerConfig) else type(sampler).__name__
    err = early_stop_error(cfg.early_stop, sampler.fixed_schedule, chooser)
    if err:
        raise ValueError(err)
    steps = horizon(sampler)
    first = int(cfg.stop_min * steps)
    if cfg.early_stop == "confidence":
        thresholds = cfg.gap_thresholds

        def by_gap(step: int, x0: torch.Tensor, still: torch.Tensor, gap: torch.Tensor) -> torch.Tensor | None:
            if step < first:
                return None
            thr = thresholds[min(2, (3 * step) // steps)]
            n = still.sum(dim=1)
            mean = torch.where(still, gap, 0.0).sum(dim=1) / n.clamp(min=1)
            return (n > 0) & (mean >= thr)

        return Policy(by_gap, callback_gap=True)

    rows = [RowSteps() for _ in tasks]
    votes = [temporal.RunningVote(steps, cfg.weighting, cfg.alpha, answers.equivalence(t, cfg.clusters), cfg.tie)
             for t in tasks]
    done = [False] * len(tasks)

    def by_vote(step: int, x0: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
        x0 = x0.cpu()
        stop = torch.zeros(len(rows), dtype=torch.bool)
        _, cut = decoder.cut(x0)
        live = [b for b in range(len(rows)) if not done[b]]
        # Only rows whose tokens up to the stop token changed are decoded and parsed again.
        fresh = [b for b in live if rows[b].last is None or not torch.equal(cut[b], rows[b].last)]
        new = dict(zip(fresh, decoder.texts(x0[fresh]) if fresh else []))
        for b in live:
            r = rows[b]
            if b in new:
                text = cut_at(new[b], stops[b])
                r.last = cut[b].clone()
                answer = answers.extract_answer(text, tasks[b], cfg.protocol)
            else:
                text, answer = r.texts[-1], r.answers[-1]
            r.texts.append(text)
            r.answers.append(answer)
            v = votes[b]
            v.add(answer)
            if step >= first and v.winner is not None and v.streak >= cfg.stop_window and v.share >= cfg.stop_share:
                stop[b] = done[b] = True
        return stop

    return Policy(by_vote, rows=rows)
