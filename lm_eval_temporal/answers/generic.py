"""Answers for tasks with no dedicated rules: found where any task's would be, read leniently.

Without knowing what kind of answer a task expects, only the explicit markers are trusted (the
last box, the ``<answer>`` block, ``#### X``, "the answer is X"; never the last number of free
text). A fragment that is a number is spelled canonically so that ``18`` and ``18.0`` agree;
anything else is kept as (delimiter-free) text and compared ignoring case and spacing.
"""

from __future__ import annotations

from lm_eval_temporal.answers.latex import clean_math
from lm_eval_temporal.answers.numeric import as_number, format_number, same_number
from lm_eval_temporal.answers.text import WS, after_hashes, answer_block, answer_is, boxes


def canonical_generic(s: str) -> str | None:
    """A number canonically spelled, else the text without math delimiters (None if empty)."""
    q = as_number(s)
    if q is not None:
        return format_number(q)
    return clean_math(s)


def extract_generic(s: str) -> str | None:
    """The answer in a cleaned generation for a task without dedicated rules, or None."""
    found = boxes(s)
    for fragment in ([found[-1]] if found else []) + [answer_block(s), after_hashes(s), answer_is(s)]:
        if fragment:
            got = canonical_generic(fragment)
            if got:
                return got
    return None


def generic_equivalent(a: str, b: str) -> bool:
    """By value when both are numbers, else equal text up to case and spacing."""
    same = same_number(a, b)
    if same is not None:
        return same
    return WS.sub(" ", a).strip().casefold() == WS.sub(" ", b).strip().casefold()
