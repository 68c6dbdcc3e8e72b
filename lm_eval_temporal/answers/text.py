"""Finding where a generation states its answer, before any task reads what the answer says.

Every task looks in the same places (a ``\\boxed{}``, an ``<answer>`` block, ``#### X``, "the
answer is X"), so locating them is shared and only the reading of the located fragment is per
task. Generations are read from the end, where the answer is, and every scan is capped so that a
1 MB or adversarial input costs no more than a normal one: real LLaDA generations (512 tokens)
are about 3k characters.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

MAX_TEXT_CHARS = 32_768
MAX_ANSWER_CHARS = 512
# Only the last few boxes are looked at, so 100k "\boxed{" cannot make the scan quadratic.
_MAX_BOXES = 16

_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_.:\-]{1,40}\|>")
# C0/C1 controls (except \t \n \r), zero-width and bidi controls, BOM.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff]")
_UNICODE_OPS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u22c5": "*",
                              "\u00b7": "*", "\u2217": "*", "\u00f7": "/", "\u2044": "/", "\uff04": "$"})
WS = re.compile(r"\s+")
# Math delimiters a model may wrap an answer in, as (opening, closing) pairs.
MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def coerce_text(text: Any) -> str | None:
    """``text`` as a string (bytes decoded, finite numbers spelled), or None."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", errors="replace")
    if isinstance(text, (int, float, Fraction)):
        return str(text) if not (isinstance(text, float) and not math.isfinite(text)) else None
    return None


def clean(text: str) -> str:
    """The tail of ``text`` without special tokens or control characters, operators in ASCII."""
    if len(text) > MAX_TEXT_CHARS:
        text = text[-MAX_TEXT_CHARS:]
    text = _SPECIAL_TOKEN.sub("", text)
    text = CONTROL.sub("", text)
    return text.translate(_UNICODE_OPS)


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*(\{)?")
# Placeholder boxes copied from the prompt ("\boxed{...}") are not answers.
PLACEHOLDER = re.compile(r"^\s*(?:\.{2,}|\\[lc]?dots|\u2026|a\s*\+\s*b\s*\*\s*c)?\s*$")


def balanced(s: str, i: int) -> str | None:
    """Content from ``i`` up to the brace closing an already opened one, or None."""
    depth = 1
    end = min(len(s), i + MAX_ANSWER_CHARS + 1)
    j = i
    while j < end:
        c = s[j]
        if c == "\\":
            j += 2  # an escaped brace is literal text
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return s[i:j]
        j += 1
    return None


_UNCLOSED_END = re.compile(r"\n|</?answer|<|\$")


def _unclosed(s: str, i: int) -> str | None:
    """A box the model never closed ("\\boxed{120" then a newline or the end): its line."""
    window = s[i:i + MAX_ANSWER_CHARS]
    m = _UNCLOSED_END.search(window)
    content = (window[:m.start()] if m else window).strip().rstrip(">]").strip()
    if "\\boxed" in content or "\\fbox" in content:
        return None
    return content or None


def boxes(s: str) -> list[str]:
    """Contents of the last few boxes, in text order, placeholders dropped."""
    found = list(_BOX.finditer(s))
    out = []
    for m in found[-_MAX_BOXES:]:
        if m.group(1):
            content = balanced(s, m.end())
            if content is None:
                content = _unclosed(s, m.end())
        else:  # "\boxed 5" (old-style, no braces)
            tok = re.match(r"[^\s$]{1,64}", s[m.end():m.end() + 64])
            content = tok.group(0) if tok else None
        if content is not None and not PLACEHOLDER.match(content):
            out.append(content)
    return out


def answer_block(s: str) -> str | None:
    """The body of the last ``<answer>`` block (closed or not), or None."""
    i = s.rfind("<answer>")
    if i < 0:
        return None
    body = s[i + 8:]
    j = body.find("</answer>")
    if j >= 0:
        body = body[:j]
    body = body.strip()
    if not body or len(body) > 4 * MAX_ANSWER_CHARS:
        return None
    return body


_HASHES = re.compile(r"####\s*([^\n]{0,200})")
_ANSWER_IS = re.compile(r"(?i)\banswer\s*(?:is|:|=)\s*:?\s*")


def _after_last(pattern: re.Pattern, s: str) -> str | None:
    """Group 1 of the last match of ``pattern``, or (no groups) the text after it."""
    last = None
    for last in pattern.finditer(s):
        pass
    if last is None:
        return None
    # One character past the cap, so that an over-long clause is rejected rather than cut.
    return last.group(1) if pattern.groups else s[last.end():last.end() + MAX_ANSWER_CHARS + 1]


def after_hashes(s: str) -> str | None:
    """The rest of the line after the last ``####`` (the GSM8K reference format), or None."""
    return _after_last(_HASHES, s)


def answer_is(s: str) -> str | None:
    """The clause after the last "answer is" / "answer:" (to the end of its line or sentence)."""
    rest = _after_last(_ANSWER_IS, s)
    if rest is None:
        return None
    rest = rest.lstrip()
    for open_, close in MATH_DELIMITERS:
        if rest.startswith(open_):
            j = rest.find(close, len(open_))
            if j > 0:
                return rest[len(open_):j]
    if rest.startswith("\\boxed"):
        b = boxes(rest)
        return b[0] if b else None
    line = rest.split("\n", 1)[0]
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    return line.strip() or None
