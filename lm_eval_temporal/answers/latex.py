"""MATH500 answers: LaTeX strings, compared cheaply first and with math-verify only if needed.

A math answer has no single canonical form, so it is kept as the LaTeX the model wrote (the
last non-placeholder box, the ``<answer>`` block's last ``$...$``, or "the answer is X"), with
whitespace collapsed and ``$``/``\\(...\\)`` delimiters removed. Equivalence tries, in order of
cost: a formatting-only normal form (``\\dfrac`` = ``\\frac``, spacing commands, outer braces),
exact rational value for plain numbers, and only then math-verify (see :mod:`.verify`), which
is slow and must be time-bounded.
"""

from __future__ import annotations

import re
from fractions import Fraction

from lm_eval_temporal.answers.numeric import numbers_equal, to_fraction
from lm_eval_temporal.answers.text import (
    MATH_DELIMITERS,
    MAX_ANSWER_CHARS,
    PLACEHOLDER,
    WS,
    answer_block,
    answer_is,
    balanced,
    boxes,
)
from lm_eval_temporal.answers.verify import math_verify_equal


def clean_math(s: str) -> str | None:
    """A LaTeX answer without math delimiters, whitespace collapsed; None if empty/too long."""
    s = s.strip()
    for _ in range(3):
        for open_, close in MATH_DELIMITERS:
            if s.startswith(open_) and s.endswith(close) and len(s) >= len(open_) + len(close):
                s = s[len(open_):len(s) - len(close)].strip()
    s = s.replace("\\displaystyle", "")
    s = WS.sub(" ", s).strip().rstrip(".,;").strip()
    if not s or len(s) > MAX_ANSWER_CHARS or PLACEHOLDER.match(s):
        return None
    return s


_INLINE_MATH = re.compile(r"\$([^$]{1,512})\$|\\\((.{1,512}?)\\\)", re.S)


def extract_math(s: str) -> str | None:
    """The MATH500 answer in a cleaned generation, or None."""
    found = boxes(s)
    if found:
        return clean_math(found[-1])
    block = answer_block(s)
    if block:
        inline = None
        for inline in _INLINE_MATH.finditer(block):
            pass
        got = clean_math(inline.group(1) or inline.group(2)) if inline else clean_math(block)
        if got:
            return got
    clause = answer_is(s)
    return clean_math(clause) if clause else None


def math_gold(s: str) -> str | None:
    """A MATH500 reference answer with a surrounding ``\\boxed{}`` or ``$...$`` removed."""
    found = boxes(s)
    return clean_math(found[-1] if found else s)


# Formatting-only rewrites: equal keys imply the same mathematical answer.
_MATH_KEY_DROP = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\displaystyle", " ")


def _math_key(s: str) -> str:
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for tok in _MATH_KEY_DROP:
        s = s.replace(tok, "")
    while s.startswith("{") and s.endswith("}") and balanced(s, 1) == s[1:-1]:
        s = s[1:-1]
    return s


_SIMPLE_NUMBER = re.compile(
    r"^(-?)(?:(\d+(?:\.\d+)?|\.\d+)(?:/(\d+))?|\\frac\{(\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}|\\frac(\d)(\d))$"
)


def _simple_number(key: str) -> Fraction | None:
    m = _SIMPLE_NUMBER.match(key)
    if not m:
        return None
    sign, num, den, fnum, fden, snum, sden = m.groups()
    if num is not None:
        return to_fraction(num, sign, den)
    return to_fraction(fnum or snum, sign, fden or sden)


def math_equivalent(a: str, b: str) -> bool:
    """Whether two extracted MATH500 answers are the same (cheap checks, then math-verify)."""
    ka, kb = _math_key(a), _math_key(b)
    if ka == kb:
        return True
    na, nb = _simple_number(ka), _simple_number(kb)
    if na is not None and nb is not None:
        return numbers_equal(na, nb)
    return math_verify_equal(a, b)
