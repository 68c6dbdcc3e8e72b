"""MATH500 answers: LaTeX strings, compared cheaply first and with math-verify only if needed.

A math answer has no single canonical form, so it is kept as the LaTeX the model wrote (the
final box or boxes, the ``<answer>`` block's last ``$...$``, or "the answer is X"), with
whitespace collapsed and ``$``/``\\(...\\)`` delimiters removed. Equivalence tries, in order of
cost: a formatting-only normal form (``\\dfrac`` = ``\\frac``, spacing commands, outer braces),
exact rational value for plain numbers, and only then math-verify (see :mod:`.verify`), which
is slow and must be time-bounded.

Several boxes (:func:`final_boxes`): the last box is the answer, because a partly denoised
canvas often still holds a stale box before the new one, and models restate their answer in a
second box. The exception is one answer in several parts, whose boxes are joined by ", "
(``1, -2``), which math-verify compares as a set; a part that repeats the one after it is
dropped (the parts agree: one answer). Which boxes are parts depends on who wrote them:

- a generation (:func:`extract_math`): boxes on the same line separated from the next one only
  by a comma and/or "and", optionally naming the next part (math delimiters, spacing commands
  and ``\\text{and}`` aside), as in ``\\boxed{1} and \\boxed{-2}``,
  ``$\\boxed{(1, 2)}$, $\\boxed{(2, 1)}$`` or ``x = \\boxed{1} and y = \\boxed{2}``. Anything
  else between two boxes (a newline, a full stop, "or", "then", a formula, a space alone)
  keeps the last box alone: there it is more likely a stale box than a part.
- a gold (:func:`math_gold`), which has no stale boxes: math-verify's own rule (its
  ``extract_boxed_content``), so that golds read as math-verify reads them: boxes less than 10
  characters apart (``\\boxed{1}\\boxed{2}``), or different ones less than 70 characters apart
  with "and", "or", a comma or a semicolon between them.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Callable

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
from lm_eval_temporal.answers.screen import verifiable
from lm_eval_temporal.answers.verify import math_verify_equal

_MAX_PARTS = 16  # boxes looked at for a multi-part answer, from the last one back


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
_BRACED_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*\{")
# Between two parts of one generated answer, once delimiters, spacing and \text{...} wrappers
# are dropped: a comma and/or "and", on one line, then perhaps the next part's name ("y =").
_SEPARATOR_NOISE = re.compile(r"\$|\\[(),;:! ]|\\q?quad(?![A-Za-z])|\\(?:text|mbox|mathrm)\s*\{|\}")
_PART_JOINER = re.compile(r"[ \t]*(?:,[ \t]*(?:and[ \t]+)?|and[ \t]+)(?:[A-Za-z](?:_\{?\w+\}?)?[ \t]*=[ \t]*)?")
# math-verify's separator between the boxes of one gold answer.
_GOLD_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")


def _generation_parts(between: str, part: str, following: str) -> bool:
    return bool(_PART_JOINER.fullmatch(_SEPARATOR_NOISE.sub("", between)))


def _gold_parts(between: str, part: str, following: str) -> bool:
    return len(between) < 10 or (part != following and len(between) < 70 and bool(_GOLD_SEPARATOR.search(between)))


def _joined_parts(s: str, joins: Callable[[str, str, str], bool]) -> list[str]:
    """Contents of the closed boxes that end the text's boxes as one multi-part answer, where
    ``joins(text between, a box, the box after it)`` says whether two boxes are parts of one."""
    spans = []
    for m in list(_BRACED_BOX.finditer(s))[-_MAX_PARTS:]:
        content = balanced(s, m.end())
        spans.append((m.start(), m.end() + len(content) + 1 if content is not None else None, content))
    parts: list[str] = []
    start = None
    for begin, end, content in reversed(spans):
        if content is None or PLACEHOLDER.match(content):
            break
        if start is not None and (end > start or not joins(s[end:start], content, parts[-1])):
            break
        if not parts or content != parts[-1]:
            parts.append(content)
        start = begin
    return parts[::-1]


def final_boxes(s: str, found: list[str] | None = None, *, gold: bool = False) -> str | None:
    """The answer the boxes of ``s`` state: the last box, or the boxes of a multi-part final
    answer joined by ", " (see the module doc; ``gold``: by the rule for golds); None without a
    box. ``found``: ``boxes(s)`` when the caller has it already."""
    found = boxes(s) if found is None else found
    if not found:
        return None
    parts = _joined_parts(s, _gold_parts if gold else _generation_parts)
    if len(parts) > 1 and parts[-1] == found[-1]:
        cleaned = [clean_math(p) for p in parts]
        if all(cleaned):
            return clean_math(", ".join(cleaned))
    return clean_math(found[-1])


def extract_math(s: str) -> str | None:
    """The MATH500 answer in a cleaned generation, or None."""
    found = boxes(s)
    if found:
        return final_boxes(s, found)
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
    """A MATH500 reference answer with a surrounding ``\\boxed{}`` or ``$...$`` removed; a gold
    written as a solution is read as math-verify reads it: its final box(es), else the clause
    after "the (final) answer is" (``... The final answer is $28\\%$`` -> ``28\\%``)."""
    found = boxes(s)
    if found:
        return final_boxes(s, found, gold=True)
    clause = answer_is(s)
    return clean_math(clause if clause else s)


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


def math_equivalent(a: str, b: str) -> bool | None:
    """Whether two extracted MATH500 answers are the same (cheap checks, then math-verify); None
    when math-verify gave no verdict in time."""
    ka, kb = _math_key(a), _math_key(b)
    if ka == kb:
        return True
    na, nb = _simple_number(ka), _simple_number(kb)
    if na is not None and nb is not None:
        return numbers_equal(na, nb)
    if not (verifiable(a) and verifiable(b)):
        return False
    return math_verify_equal(a, b)
