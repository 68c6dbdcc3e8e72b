"""Value of an arithmetic answer such as ``(49+55)-53`` without ever calling ``eval``.

Countdown answers are expressions, and numeric answers are sometimes written as one
(``\\boxed{20 + 80 + 160}``). Model output is untrusted and may be huge or deeply nested, so
this is a small recursive-descent parser with hard limits on tokens, nesting and literal size,
computing with exact fractions (``1/3 * 3`` is exactly 1, which the countdown target check
and equivalence by value rely on).
"""

from __future__ import annotations

import re
from fractions import Fraction

from lm_eval_temporal.answers.text import MAX_ANSWER_CHARS

_ARITH_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|([-+*/()]))")
_MAX_ARITH_TOKENS = 128
_MAX_ARITH_DEPTH = 32


class _ArithError(Exception):
    pass


def _tokenize(s: str) -> list[tuple[str, str]] | None:
    if len(s) > MAX_ANSWER_CHARS:
        return None
    out, i, n = [], 0, len(s)
    while i < n:
        m = _ARITH_TOKEN.match(s, i)
        if not m:
            if s[i:].strip() == "":
                break
            return None
        if m.group(1) is not None:
            if len(m.group(1)) > 18:
                return None
            out.append(("n", m.group(1)))
        else:
            out.append(("o", m.group(2)))
        if len(out) > _MAX_ARITH_TOKENS:
            return None
        i = m.end()
    return out or None


def parse_arith(s: str) -> tuple[Fraction, tuple[Fraction, ...]] | None:
    """Value and literals of an expression over numbers, + - * / and parentheses, or None.

    A recursive-descent parser over at most 128 tokens and 32 nesting levels, computing with
    exact fractions; anything else (names, calls, ``**``, ``=``) is rejected, never evaluated.
    """
    toks = _tokenize(s)
    if toks is None:
        return None
    pos = 0
    literals: list[Fraction] = []

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def expr(depth: int) -> Fraction:
        nonlocal pos
        v = term(depth)
        while (t := peek()) is not None and t[1] in "+-" and t[0] == "o":
            pos += 1
            r = term(depth)
            v = v + r if t[1] == "+" else v - r
        return v

    def term(depth: int) -> Fraction:
        nonlocal pos
        v = factor(depth)
        while (t := peek()) is not None and t[0] == "o" and t[1] in "*/":
            pos += 1
            r = factor(depth)
            if t[1] == "*":
                v = v * r
            else:
                if r == 0:
                    raise _ArithError("division by zero")
                v = v / r
        return v

    def factor(depth: int) -> Fraction:
        nonlocal pos
        if depth > _MAX_ARITH_DEPTH:
            raise _ArithError("too deep")
        t = peek()
        if t is None:
            raise _ArithError("unexpected end")
        pos += 1
        if t[0] == "n":
            q = Fraction(t[1])
            literals.append(q)
            return q
        if t[1] == "-":
            return -factor(depth + 1)
        if t[1] == "+":
            return factor(depth + 1)
        if t[1] == "(":
            v = expr(depth + 1)
            if peek() != ("o", ")"):
                raise _ArithError("unbalanced")
            pos += 1
            return v
        raise _ArithError(f"unexpected {t[1]!r}")

    try:
        value = expr(0)
    except (_ArithError, RecursionError, ValueError, ZeroDivisionError):
        return None
    if pos != len(toks):
        return None
    return value, tuple(sorted(literals))
