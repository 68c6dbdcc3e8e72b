"""Scores of a :class:`~lm_eval_temporal.record.TemporalRecord` against its gold answer.

The only place where final-pass, ever-pass and vote-pass are decided: the task metrics
(``tasks.process_results``), the plots, the benchmarks and the TCR logs all call
:func:`score`. Each distinct answer is judged once (a 256-step trajectory holds a handful of
answers, and math-verify is slow). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lm_eval_temporal import answers
from lm_eval_temporal.record import TemporalRecord

__all__ = ["Score", "score", "judge"]

Check = Callable[[str], bool]


@dataclass(frozen=True)
class Score:
    """``final_pass``: the last step's answer is right (plain decoding). ``ever_pass``: some
    step's answer is right. ``vote_pass``: the voted answer is right (the final answer's
    verdict when voting is off). ``first_gold_step``: the first step with a right answer.
    ``correct``: the verdict of every distinct answer of the record."""

    final_pass: bool
    ever_pass: bool
    vote_pass: bool
    tse: float
    first_gold_step: int | None
    correct: Mapping[str, bool]

    def step_pass(self, record: TemporalRecord) -> list[bool]:
        """Whether each step's answer is right."""
        return [a is not None and self.correct[a] for a in record.answers]


def judge(record: TemporalRecord, gold: Any, *, task: str | None = None, check: Check | None = None) -> dict[str, bool]:
    """The verdict of each distinct answer of ``record``: ``check(answer)``, by default
    ``answers.answer_correct`` with the record's protocol and answer parser (unless ``task``
    names another)."""
    if check is None:
        parser = task or record.answer_task

        def check(a: str) -> bool:
            return answers.answer_correct(a, gold, parser, record.protocol)
    return {a: bool(check(a)) for a in record.distinct_answers()}


def score(record: TemporalRecord, gold: Any, *, task: str | None = None, check: Check | None = None) -> Score:
    """Score ``record`` against ``gold`` (the task's normalised gold answer); ``task`` and
    ``check`` as in :func:`judge`."""
    correct = judge(record, gold, task=task, check=check)

    def ok(a: str | None) -> bool:
        return a is not None and correct[a]

    first = next((s for s, a in enumerate(record.answers) if ok(a)), None)
    final_pass = ok(record.final)
    return Score(
        final_pass=final_pass,
        ever_pass=first is not None,
        vote_pass=ok(record.vote) if record.has_vote else final_pass,
        tse=record.tse,
        first_gold_step=first,
        correct=correct,
    )
