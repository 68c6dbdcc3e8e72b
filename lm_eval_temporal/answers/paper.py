"""The paper's official answer protocol, reproduced exactly (``protocol="paper"``).

"Time Is a Feature" (arXiv 2508.09138) scores its tables with its own parsers
(aim-uofa/dLLM-MidTruth, ``eval/get_acc.py`` and ``eval/utils/*.py``, which follow d1's). They
differ from this package's default rules in ways that move accuracy by points, so a comparison
with the paper's numbers needs them as they are, quirks included. The rules, per task (see
``shared/data/official_protocol/README.md``, against whose reference data the tests check every
case):

- gsm8k, svamp: the first ``\\boxed{...}`` (non-greedy, cut at the first ``}``) whose stripped
  content is non-empty and not only dots, read as a float, else the first number in it; if no
  box gives one, the stripped ``<answer>...</answer>`` content as a float, else its last
  number (both tasks: SVAMP's official parser is GSM8K's). The answer is that float, returned as ``repr(float)`` (``"18.0"``) so that answers
  that are the same float are the same string, as they are the same key in the official vote.
  Correct when ``float(answer) == float(gold)``.
- math500: the classic MATH ``last_boxed_only_string`` + ``remove_boxed`` (lm-eval's copy in
  ``lm_eval.tasks.hendrycks_math.utils``, imported when first needed), with d1's two quirks: no
  box at all makes the WHOLE text the answer, and a wrapper ``remove_boxed`` rejects (``\\fbox``)
  is kept; an unclosed last box (or an empty one) falls back to the stripped first ``<answer>``
  content. Correct by the Hendrycks ``is_equiv`` (``strip_string`` on both sides, then equality).
- countdown: the same box extraction (no box: the whole text; unclosed box: the ``<answer>``
  content or the whole text), LaTeX ``\\div \\times \\cdot`` as ``/ * *``, only the expression of
  the first ``expression = number``; then it must be digits, ``+ - * / ( )`` and spaces, with
  balanced parentheses and exactly three integers, else nothing is parsed. Correct when its
  integers, sorted, are the given numbers, sorted, and its value is the target within 1e-5. The
  value comes from :func:`.arith.parse_arith` (never ``eval``); Python syntax the official
  ``eval`` would also accept but this evaluator does not (``**``, ``//``) is scored wrong, and
  integer literals with a leading zero (``07``) are wrong as they are for Python.

Pure functions, no torch, and no lm_eval import until a math500 or countdown answer is parsed
or a math500 one checked. The text is read whole and as given (no special tokens removed, no
cap: the official code has none), in time linear in its length.
The public entry points are ``answers.extract_answer(..., protocol="paper")`` and
``answers.is_correct(..., protocol="paper")``; :func:`check_answer` scores an answer this module
already parsed (e.g. the winner of a vote).
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable

from lm_eval_temporal.answers.arith import parse_arith
from lm_eval_temporal.answers.registry import answer_task

_FIRST_BOXES = re.compile(r"\\boxed{(.*?)}")
_ONLY_DOTS = re.compile(r"^\.+$")
_NUMBER = re.compile(r"-?\d+\.?\d*")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# The official r"([0-9+\-*/() ]+)=[0-9. ]+" search: its match is the first maximal run of these
# characters followed by "=" and a digit, dot or space, so starting only at a run's first
# character gives the same group in linear time (the plain pattern is quadratic in a run).
_EXPR_EQUALS = re.compile(r"(?<![0-9+\-*/() ])([0-9+\-*/() ]+)=[0-9. ]")
_EXPR_ONLY = re.compile(r"^[0-9+\-*/() ]+$")  # "$": a trailing newline passes, as in the official check
_DIGITS = re.compile(r"\d+")
_LEADING_ZERO = re.compile(r"(?<![\d.])0\d*[1-9]")  # "07": a SyntaxError for Python's eval
_COUNTDOWN_TOL = 1e-5


@lru_cache(maxsize=1)
def _hendrycks() -> Any:
    """lm-eval's copy of the classic MATH answer code (imported on first use only)."""
    from lm_eval.tasks.hendrycks_math import utils

    return utils


def _answer_tag(text: str) -> str | None:
    """The stripped content of the first ``<answer>...</answer>``, or None."""
    end = text.rfind("</answer>")
    if end < 0:
        return None
    m = _ANSWER_TAG.search(text, 0, end + 9)  # same match; no start past the last tag rescans the text
    return m.group(1).strip() if m else None


def _float_key(x: float) -> str:
    return repr(x + 0.0)  # -0.0 and 0.0 are one key, as they are one dict key


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except (ValueError, OverflowError):
        return None


def number_answer(text: str) -> str | None:
    """gsm8k / svamp: the official float parse, as ``repr(float)``; None if nothing parses."""
    last_close = text.rfind("}")
    for content in _FIRST_BOXES.findall(text[:last_close + 1]):  # no match can end past the last "}"
        content = content.strip()
        if not content or _ONLY_DOTS.match(content):
            continue
        x = _to_float(content)
        if x is None:
            numbers = _NUMBER.findall(content)
            x = _to_float(numbers[0]) if numbers else None
        if x is not None:
            return _float_key(x)
    body = _answer_tag(text)
    if body:
        x = _to_float(body)
        if x is None:
            numbers = _NUMBER.findall(body)
            x = _to_float(numbers[-1]) if numbers else None  # a box reads its first number, a tag its last
        if x is not None:
            return _float_key(x)
    return None


def _unbox(text: str) -> str | None:
    """d1's ``remove_boxed(last_boxed_only_string(text))``: the whole text when it has no box,
    None when the last box is unclosed, a wrapper ``remove_boxed`` rejects kept as it is."""
    u = _hendrycks()
    if "\\boxed" not in text and "\\fbox" not in text:
        return text
    boxed = u.last_boxed_only_string(text)
    if boxed is None:
        return None
    try:
        return u.remove_boxed(boxed)
    except AssertionError:
        return boxed


def math_answer(text: str) -> str | None:
    """math500: the official answer string (possibly the whole text), or None."""
    parsed = _unbox(text)
    if not parsed:
        tag = _answer_tag(text)
        if tag is not None:
            parsed = tag
    return parsed


def countdown_answer(text: str) -> str | None:
    """countdown: the official expression (spaces as written), or None."""
    equation = _unbox(text)
    if equation is None:
        tag = _answer_tag(text)
        equation = text if tag is None else tag
    equation = equation.replace("\\div", "/").replace("\\times", "*").replace("\\cdot", "*")
    if "=" in equation:  # (a shortcut only)
        m = _EXPR_EQUALS.search(equation)
        if m:
            equation = m.group(1).strip()
    if not _EXPR_ONLY.match(equation) or not _parens_balanced(equation):
        return None
    if len(_DIGITS.findall(equation)) != 3:
        return None
    return equation


def _parens_balanced(s: str) -> bool:
    depth = 0
    for c in s:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_EXTRACT: dict[str, Callable[[str], str | None]] = {
    "gsm8k": number_answer,
    "svamp": number_answer,
    "math500": math_answer,
    "countdown": countdown_answer,
}
TASKS: tuple[str, ...] = tuple(_EXTRACT)


def paper_task(task: str) -> str:
    """The canonical name of a task the paper protocol covers; ValueError otherwise."""
    name = answer_task(task).name
    if name not in _EXTRACT:
        raise ValueError(f"protocol='paper' has no rules for task {task!r}; it covers {', '.join(TASKS)}")
    return name


def extract(text: str, task: str) -> str | None:
    """The official parse of a generation (may raise on a parser bug; see ``extract_answer``)."""
    return _EXTRACT[paper_task(task)](text)


def paper_gold(gold: Any, task: str) -> Any:
    """The gold in the form the official comparison takes: a float (gsm8k, svamp), the answer
    string (math500) or ``[[numbers], target]`` (countdown), from any format the package's
    ``normalize_gold`` accepts. ValueError if malformed, as for a null gold (the official
    scorer raises on those; they count as wrong)."""
    task = paper_task(task)
    g = answer_task(task).normalize_gold(gold)
    if task in ("gsm8k", "svamp"):
        try:
            return float(Fraction(g))
        except (ValueError, ZeroDivisionError, OverflowError):
            raise ValueError(f"{task} gold {gold!r}: not a number") from None
    return g


def _countdown_value(expr: str) -> float | None:
    if _LEADING_ZERO.search(expr):
        return None
    parsed = parse_arith(expr.strip())
    return None if parsed is None else float(parsed[0])


def check(answer: str | None, gold: Any, task: str) -> bool:
    """The official verdict on a parsed ``answer`` against a :func:`paper_gold` gold (may raise)."""
    task = paper_task(task)
    if answer is None:
        return False
    if task in ("gsm8k", "svamp"):
        x = _to_float(answer)
        return x is not None and x == gold
    if task == "math500":
        return bool(_hendrycks().is_equiv(answer, gold))
    numbers, target = gold  # countdown
    if sorted(int(n) for n in _DIGITS.findall(answer)) != sorted(numbers):
        return False
    value = _countdown_value(answer)
    return value is not None and abs(value - target) < _COUNTDOWN_TOL


def check_answer(answer: str | None, gold: Any, task: str) -> bool:
    """Whether an answer :func:`extract` returned (e.g. a vote's winner) is officially correct.

    ``gold`` in any format ``normalize_gold`` takes; never raises except for a task without
    paper rules.
    """
    task = paper_task(task)
    try:
        return check(answer, paper_gold(gold, task), task)
    except Exception:  # noqa: BLE001 - the official scorer counts what it cannot score as wrong
        return False
