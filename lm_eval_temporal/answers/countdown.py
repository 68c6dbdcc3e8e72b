"""Countdown answers: arithmetic expressions over the given numbers that must hit a target.

An answer here is an expression, not a value: two answers are the same only when they have
the same value *and* use the same multiset of numbers, and a correct one uses every given
number exactly once and reaches the target within ``1e-5``. Models write expressions in LaTeX
(``\\times``, ``\\cdot``, ``\\div``, ``\\frac``) and often append ``= target``, so both are
undone before the expression is parsed (by :mod:`.arith`, never ``eval``). The last box,
``<answer>`` block or "the answer is" clause that is a valid expression is the answer, or the
whole text when it is one; it is returned without spaces, e.g. ``"(49+55)-53"``.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from typing import Any

from lm_eval_temporal.answers.arith import parse_arith
from lm_eval_temporal.answers.numeric import exact
from lm_eval_temporal.answers.text import MAX_ANSWER_CHARS, WS, answer_block, answer_is, boxes

_INNER_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def _countdown_prep(s: str) -> str:
    for _ in range(8):  # innermost \frac first; bounded
        s2 = _INNER_FRAC.sub(r"((\1)/(\2))", s)
        if s2 == s:
            break
        s = s2
    for a, b in (("\\times", "*"), ("\\cdot", "*"), ("\\ast", "*"), ("\\div", "/"), ("\\left", ""),
                 ("\\right", ""), ("\\(", ""), ("\\)", ""), ("\\[", ""), ("\\]", ""), ("\\!", ""),
                 ("\\,", ""), ("\\;", ""), ("\\ ", " "), ("$", ""), ("[", "("), ("]", ")"),
                 ("{", "("), ("}", ")")):
        s = s.replace(a, b)
    return s.strip().rstrip(".").strip()


def countdown_expr(fragment: str) -> tuple[str, tuple[Fraction, tuple[Fraction, ...]]] | None:
    """(canonical expression, (value, literals)) of a countdown answer fragment, or None."""
    if len(fragment) > MAX_ANSWER_CHARS:
        return None
    s = _countdown_prep(fragment)
    sides = [p.strip() for p in s.split("=")] if "=" in s else [s]
    if len(sides) > 4:
        return None
    # "49 + 55 - 53 = 51": the side with operators is the expression (the LHS first).
    ordered = sorted(sides, key=lambda p: not re.search(r"\d\s*[-+*/(]|[)]", p))
    for side in ordered:
        parsed = parse_arith(side)
        if parsed is not None:
            return WS.sub("", side), parsed
    return None


def extract_countdown(s: str) -> str | None:
    """The countdown expression in a cleaned generation, without spaces, or None."""
    candidates = list(reversed(boxes(s)))
    block = answer_block(s)
    if block:
        candidates.append(block)
    clause = answer_is(s)
    if clause:
        candidates.append(clause)
    if len(s) <= MAX_ANSWER_CHARS:
        candidates.append(s)
    for c in candidates:
        got = countdown_expr(c)
        if got is not None:
            return got[0]
    return None


def countdown_equivalent(a: str, b: str) -> bool:
    """Same value from the same numbers; unparsable answers only when spelled alike."""
    pa, pb = countdown_expr(a), countdown_expr(b)
    if pa is None or pb is None:
        return a.strip() == b.strip()
    (va, la), (vb, lb) = pa[1], pb[1]
    return la == lb and va == vb


def countdown_check(answer: str, gold: list) -> bool:
    """Whether ``answer`` uses exactly the numbers of a normalised gold and hits its target."""
    got = countdown_expr(answer)
    if got is None:
        return False
    value, literals = got[1]
    numbers, target = gold
    want = tuple(sorted(exact(x) for x in numbers))
    return literals == want and abs(float(value) - float(target)) < 1e-5


def countdown_gold(gold: Any) -> list:
    """``[[a, b, c], target]`` from that list/tuple, its JSON, ``("a,b,c", "t")`` or an
    ``{"input": "a,b,c", "output": "t"}`` row (ints where the values are whole)."""
    if isinstance(gold, str):
        gold = gold.strip()
        try:
            gold = json.loads(gold)
        except ValueError:
            raise ValueError(f"countdown gold {gold!r}: expected [[a, b, c], target]") from None
    if isinstance(gold, dict) and "input" in gold and "output" in gold:
        gold = (gold["input"], gold["output"])
    if not isinstance(gold, (list, tuple)) or len(gold) != 2:
        raise ValueError(f"countdown gold {gold!r}: expected (numbers, target), e.g. [[49, 55, 53], 51]")
    numbers, target = gold
    if isinstance(numbers, str):
        numbers = [p for p in re.split(r"[,\s]+", numbers.strip().strip("[]")) if p]
    if not isinstance(numbers, (list, tuple)) or not numbers or len(numbers) > 16:
        raise ValueError(f"countdown gold numbers {numbers!r}: expected a list of numbers or 'a,b,c'")

    def num(x: Any) -> int | float:
        if isinstance(x, bool):
            raise ValueError
        q = x if isinstance(x, (int, float)) else float(str(x).strip())
        if isinstance(q, float):
            if not math.isfinite(q):
                raise ValueError
            return int(q) if q.is_integer() else q
        return q

    try:
        return [[num(x) for x in numbers], num(target)]
    except (ValueError, TypeError):
        raise ValueError(f"countdown gold {gold!r}: numbers and target must be finite numbers") from None
