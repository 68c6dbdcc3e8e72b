"""Answer extraction and equivalence per task (pure Python; no torch, no lm_eval).

The backend, the task metrics, TCR rewards, the plots and the benchmarks all need the same
answer for the same generation, and the temporal vote needs to know when two step answers are
the same answer; this package is that single source. Public API (stable):

- :func:`extract_answer` ``(text, task) -> str | None``: the canonical answer in a generation.
- :func:`equivalent` ``(a, b, task) -> bool``: whether two *extracted* answers are the same
  answer (cached per distinct pair; symmetric); :func:`equivalence` ``(task, cluster)`` gives
  it bound to a task, or None for exact-string clustering. A math-verify check that runs out
  of time is not equivalent for that call, is not cached, and is counted:
  :func:`scorer_stats` ``(since=None) -> dict`` (``calls``, ``unknown``, ``timeouts``, ...).
- :func:`clear_caches` and :func:`cache_info`: the extraction and equivalence caches.
- :func:`is_correct` ``(text, gold, task) -> bool``: the answer in ``text`` matches ``gold``.
- :func:`normalize_gold` ``(gold, task)``: the gold answer in the form the two above expect.
- :data:`TASKS` (names), :data:`TASK_ALIASES`, :func:`canonical_task`; :func:`answer_task`
  gives a task's :class:`AnswerTask` entry.
- ``protocol="paper"`` (:data:`PROTOCOLS`) on :func:`extract_answer` and :func:`is_correct`:
  the official rules of the paper's evaluation code, quirks included (:mod:`.paper`; gsm8k,
  svamp, math500, countdown), for comparisons with its published numbers;
  :func:`.paper.check_answer` scores an answer already parsed that way (a vote's winner).
  ``"default"`` (the default) is this package's own rules.

Tasks: ``gsm8k`` and ``svamp`` (numbers, :mod:`.numeric`), ``math500`` (alias ``math``; LaTeX
answers, :mod:`.latex`, with math-verify in :mod:`.verify`), ``countdown`` (arithmetic
expressions over given numbers, :mod:`.countdown`) and ``generic`` (:mod:`.generic`). Where
answers are looked for is shared (:mod:`.text`); the per-task rules are one table
(:mod:`.registry`). Every step is bounded in time: inputs are capped
(:data:`MAX_TEXT_CHARS`, :data:`MAX_ANSWER_CHARS`), arithmetic is parsed, never ``eval``-ed,
forms whose evaluation explodes (nested factorials, huge powers, Gamma and binomials of large
arguments) are screened out before sympy, and math-verify runs in a small pool of helper
processes (``LM_EVAL_TEMPORAL_MATH_WORKERS``, default 3), each call bounded by
:data:`MATH_TIMEOUT_S` (``LM_EVAL_TEMPORAL_MATH_TIMEOUT``, default 1.25 s) plus a 0.5 s kill
grace that the caller never waits for.
"""

from __future__ import annotations

from lm_eval_temporal.answers.api import (
    PROTOCOLS,
    answer_correct,
    cache_info,
    clear_caches,
    equivalence,
    equivalent,
    extract_answer,
    is_correct,
    normalize_gold,
    scorer_stats,
)
from lm_eval_temporal.answers.registry import TASK_ALIASES, TASKS, AnswerTask, answer_task, canonical_task
from lm_eval_temporal.answers.text import MAX_ANSWER_CHARS, MAX_TEXT_CHARS
from lm_eval_temporal.answers.verify import MATH_TIMEOUT_S

__all__ = [
    "TASKS",
    "TASK_ALIASES",
    "PROTOCOLS",
    "MAX_TEXT_CHARS",
    "MAX_ANSWER_CHARS",
    "MATH_TIMEOUT_S",
    "AnswerTask",
    "answer_task",
    "canonical_task",
    "equivalence",
    "extract_answer",
    "equivalent",
    "is_correct",
    "answer_correct",
    "normalize_gold",
    "scorer_stats",
    "clear_caches",
    "cache_info",
]
