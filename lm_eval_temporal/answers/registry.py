"""What each task does with answers, in one table instead of an ``if task`` chain per function.

A task is defined by how it finds its answer in a generation, when two answers are the same,
how its gold answers are written and how an answer is checked against one. Keeping these four
together means a new task is one entry, and the public functions (:mod:`.api`) dispatch through
:func:`answer_task` alone, where aliases are also resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from types import MappingProxyType
from typing import Any, Callable, Mapping

from lm_eval_temporal.answers.countdown import countdown_check, countdown_equivalent, countdown_gold, extract_countdown
from lm_eval_temporal.answers.generic import canonical_generic, extract_generic, generic_equivalent
from lm_eval_temporal.answers.latex import extract_math, math_equivalent, math_gold
from lm_eval_temporal.answers.numeric import exact, extract_numeric, format_number, number_gold, numeric_equivalent
from lm_eval_temporal.answers.text import CONTROL


@dataclass(frozen=True)
class AnswerTask:
    """One task's answer rules.

    - ``extract``: cleaned generation -> canonical answer string, or None.
    - ``equivalent``: whether two extracted answers are the same (uncached; may raise); None
      when a time-bounded check gave no verdict.
    - ``normalize_gold``: any accepted gold format -> its canonical form; ValueError if malformed.
    - ``check``: extracted answer vs normalised gold; None means "is :func:`equivalent` to it".
    - ``bare_answers``: a short one-line text no rule extracts from counts as the answer itself
      (e.g. an already extracted ``\\frac{1}{2}``).
    """

    name: str
    extract: Callable[[str], str | None]
    equivalent: Callable[[str, str], bool | None]
    normalize_gold: Callable[[Any], Any]
    check: Callable[[str, Any], bool] | None = None
    bare_answers: bool = False


def _scalar_gold(gold: Any, *, task: str, parse: Callable[[str], str | None], missing: str) -> str:
    """A string or number gold: numbers spelled canonically, strings read by ``parse``."""
    if gold is None or isinstance(gold, bool):
        raise ValueError(f"{task} gold {gold!r}: expected a string or a number")
    if isinstance(gold, (int, float, Fraction)):
        if isinstance(gold, float) and not math.isfinite(gold):
            raise ValueError(f"{task} gold {gold!r}: not a finite number")
        return format_number(exact(gold))
    if not isinstance(gold, str):
        raise ValueError(f"{task} gold {gold!r}: expected a string or a number, got {type(gold).__name__}")
    got = parse(CONTROL.sub("", gold).strip())
    if got is None:
        raise ValueError(f"{task} gold {gold[:80]!r}: {missing}")
    return got


def _numeric_task(name: str) -> AnswerTask:
    gold = partial(_scalar_gold, task=name, parse=number_gold, missing="no number found")
    return AnswerTask(name, extract_numeric, numeric_equivalent, gold)


REGISTRY: Mapping[str, AnswerTask] = MappingProxyType({
    t.name: t
    for t in (
        _numeric_task("gsm8k"),
        _numeric_task("svamp"),
        AnswerTask("math500", extract_math, math_equivalent,
                   partial(_scalar_gold, task="math500", parse=math_gold, missing="empty"), bare_answers=True),
        AnswerTask("countdown", extract_countdown, countdown_equivalent, countdown_gold, check=countdown_check),
        AnswerTask("generic", extract_generic, generic_equivalent,
                   partial(_scalar_gold, task="generic", parse=canonical_generic, missing="empty"), bare_answers=True),
    )
})
TASKS: tuple[str, ...] = tuple(REGISTRY)
TASK_ALIASES: dict[str, str] = {"math": "math500"}


def answer_task(task: str) -> AnswerTask:
    """The entry for ``task`` or its alias (case and spacing ignored); ValueError otherwise."""
    t = task.strip().lower() if isinstance(task, str) else None
    t = TASK_ALIASES.get(t, t) if t is not None else None
    if t not in REGISTRY:
        accepted = ", ".join(TASKS) + ", " + ", ".join(f"{k} (= {v})" for k, v in TASK_ALIASES.items())
        raise ValueError(f"unknown answer task {task!r}; expected one of: {accepted}")
    return REGISTRY[t]


def canonical_task(task: str) -> str:
    """``task`` or its alias resolved; ValueError naming the accepted values otherwise."""
    return answer_task(task).name
