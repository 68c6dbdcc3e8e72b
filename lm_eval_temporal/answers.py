"""Answer extraction and equivalence per task (pure Python; no torch).

Public API (stable; the backend, the task metrics, TCR rewards and the plots call it):

- :func:`extract_answer` ``(text, task) -> str | None``: the canonical answer in a generation.
- :func:`equivalent` ``(a, b, task) -> bool``: whether two *extracted* answers are the same
  answer (cached per distinct pair; symmetric).
- :func:`is_correct` ``(text, gold, task) -> bool``: the answer in ``text`` matches ``gold``.
- :func:`normalize_gold` ``(gold, task)``: the gold answer in the form the two above expect.
- :data:`TASKS`, :data:`TASK_ALIASES`, :func:`canonical_task`.

Tasks: ``gsm8k`` and ``svamp`` (numbers), ``math500`` (alias ``math``; LaTeX answers compared
with math-verify), ``countdown`` (arithmetic expressions over given numbers) and ``generic``.

What each task extracts (first rule that yields an answer wins):

==========  ===========================================================================
gsm8k,      last ``\\boxed{}`` holding a number; the ``<answer>...</answer>`` block (its
svamp       last number); ``#### N``; "the answer is N"; the last number in the text.
            Returned as a normalised number string: ``"18"``, ``"0.5"``, ``"-3"``,
            ``"1/3"`` (only for non-terminating fractions).
math500     last non-placeholder ``\\boxed{}`` (nested braces; last box wins); the
            ``<answer>`` block (its last ``$...$`` if any); "the answer is X". Returned as
            the LaTeX string, whitespace collapsed and ``$``/``\\(...\\)`` delimiters removed.
countdown   the last box, ``<answer>`` block or "the answer is" clause that is a valid
            arithmetic expression (``+ - * /``, parentheses, decimals; LaTeX ``\\times``,
            ``\\cdot``, ``\\div``, ``\\frac``; an ``= target`` side is dropped), or the whole
            text when it is one. Returned without spaces, e.g. ``"(49+55)-53"``.
generic     box, ``<answer>`` block, ``#### X``, "the answer is X"; numbers normalised,
            other strings stripped.
==========  ===========================================================================

Special tokens such as ``<|eot_id|>`` / ``<|endoftext|>`` and unicode control characters are
removed first. Placeholder boxes copied from the prompt (``\\boxed{...}``) are skipped.

Equivalence: numbers by value (``18`` = ``18.0`` = ``$18`` = ``18 dollars``; ``0.5`` = ``1/2``);
countdown expressions by value *and* the multiset of numbers used; math answers first by a
formatting-only normal form and by exact rational value, then with math-verify (both
directions). Gold check for countdown: every given number used exactly once and
``|value - target| < 1e-5``.

Bounded time. Inputs are capped (the last :data:`MAX_TEXT_CHARS` characters of a text are read;
answers longer than :data:`MAX_ANSWER_CHARS` are dropped; the countdown evaluator limits
tokens, nesting and literal size and never calls ``eval``). math-verify (sympy) is the only
unbounded component; its own timeout uses SIGALRM and only works on a main thread, so it runs
in one long-lived helper process per Python process (started on first use, never per call) that
is killed and restarted when a call exceeds :data:`MATH_TIMEOUT_S`. This works the same from
threads and from (daemonic) subprocesses. Inputs that would make sympy blow up (power towers,
huge exponents/factorials, deep nesting) never reach it. If the helper cannot be started,
or ``LM_EVAL_TEMPORAL_MATH_WORKER=0`` is set, math-verify runs in-process behind those screens.
A timed-out comparison counts as "not equivalent" (and is cached as such).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
from fractions import Fraction
from functools import lru_cache
from typing import Any

__all__ = [
    "TASKS",
    "TASK_ALIASES",
    "MAX_TEXT_CHARS",
    "MAX_ANSWER_CHARS",
    "MATH_TIMEOUT_S",
    "canonical_task",
    "extract_answer",
    "equivalent",
    "is_correct",
    "normalize_gold",
]

TASKS: tuple[str, ...] = ("gsm8k", "svamp", "math500", "countdown", "generic")
TASK_ALIASES: dict[str, str] = {"math": "math500"}

# Generations are read from the end: the answer is there, and a 1 MB input must cost no more
# than a normal one. Real LLaDA generations (512 tokens) are ~3k characters.
MAX_TEXT_CHARS = 32_768
MAX_ANSWER_CHARS = 512
# Only the last few boxes are looked at, so 100k "\boxed{" cannot make the scan quadratic.
_MAX_BOXES = 16
# Numbers longer than this are not answers (and int() refuses > 4300 digits anyway).
_MAX_DIGITS = 60
# math-verify per-comparison bound (seconds), overridable by environment.
MATH_TIMEOUT_S = float(os.environ.get("LM_EVAL_TEMPORAL_MATH_TIMEOUT", "5") or 5)
_WORKER_ENV = "LM_EVAL_TEMPORAL_MATH_WORKER"
_STARTUP_TIMEOUT_S = 120.0
# Extra wait past the helper's own (SIGALRM) timeout before it is killed and replaced.
_KILL_GRACE_S = 2.0
# Cache only texts up to this size: bigger ones are rare and would pin memory.
_CACHE_TEXT_CHARS = 16_384


def canonical_task(task: str) -> str:
    """``task`` or its alias resolved; ValueError naming the accepted values otherwise."""
    t = task.strip().lower() if isinstance(task, str) else None
    t = TASK_ALIASES.get(t, t) if t is not None else None
    if t not in TASKS:
        accepted = ", ".join(TASKS) + ", " + ", ".join(f"{k} (= {v})" for k, v in TASK_ALIASES.items())
        raise ValueError(f"unknown answer task {task!r}; expected one of: {accepted}")
    return t


# ----------------------------------------------------------------------------- cleaning

_SPECIAL_TOKEN = re.compile(r"<\|[A-Za-z0-9_.:\-]{1,40}\|>")
# C0/C1 controls (except \t \n \r), zero-width and bidi controls, BOM.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff]")
_UNICODE_OPS = str.maketrans({"\u2212": "-", "\u2013": "-", "\u2014": "-", "\u00d7": "*", "\u22c5": "*",
                              "\u00b7": "*", "\u2217": "*", "\u00f7": "/", "\u2044": "/", "\uff04": "$"})


def _coerce_text(text: Any) -> str | None:
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text).decode("utf-8", errors="replace")
    if isinstance(text, (int, float, Fraction)):
        return str(text) if not (isinstance(text, float) and not math.isfinite(text)) else None
    return None


def _clean(text: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        text = text[-MAX_TEXT_CHARS:]
    text = _SPECIAL_TOKEN.sub("", text)
    text = _CONTROL.sub("", text)
    return text.translate(_UNICODE_OPS)


# ----------------------------------------------------------------------------- locating answers

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*(\{)?")
_PLACEHOLDER = re.compile(r"^\s*(?:\.{2,}|\\[lc]?dots|\u2026|a\s*\+\s*b\s*\*\s*c)?\s*$")


def _balanced(s: str, i: int) -> str | None:
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


def _boxes(s: str) -> list[str]:
    """Contents of the last few boxes, in text order, placeholders dropped."""
    found = list(_BOX.finditer(s))
    out = []
    for m in found[-_MAX_BOXES:]:
        if m.group(1):
            content = _balanced(s, m.end())
            if content is None:
                content = _unclosed(s, m.end())
        else:  # "\boxed 5" (old-style, no braces)
            tok = re.match(r"[^\s$]{1,64}", s[m.end():m.end() + 64])
            content = tok.group(0) if tok else None
        if content is not None and not _PLACEHOLDER.match(content):
            out.append(content)
    return out


def _answer_block(s: str) -> str | None:
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
    last = None
    for last in pattern.finditer(s):
        pass
    if last is None:
        return None
    # One character past the cap, so that an over-long clause is rejected rather than cut.
    return last.group(1) if pattern.groups else s[last.end():last.end() + MAX_ANSWER_CHARS + 1]


def _answer_is(s: str) -> str | None:
    """The clause after the last "answer is" / "answer:" (to the end of its line or sentence)."""
    rest = _after_last(_ANSWER_IS, s)
    if rest is None:
        return None
    rest = rest.lstrip()
    for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(open_):
            j = rest.find(close, len(open_))
            if j > 0:
                return rest[len(open_):j]
    if rest.startswith("\\boxed"):
        b = _boxes(rest)
        return b[0] if b else None
    line = rest.split("\n", 1)[0]
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]
    return line.strip() or None


# ----------------------------------------------------------------------------- numbers

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))|(?<=\d)\{,\}(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(?<![\w.])(-?)(\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?))?")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{\s*(-?[\d.]+)\s*\}|(\d))\s*(?:\{\s*(-?[\d.]+)\s*\}|(\d))")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]{0,200})\}")


def _to_fraction(num: str, sign: str = "", den: str | None = None) -> Fraction | None:
    digits = len(num) + (len(den) if den else 0)
    if digits > _MAX_DIGITS:
        return None
    try:
        q = Fraction(num)
        if den is not None:
            d = Fraction(den)
            if d == 0:
                return None
            q /= d
    except (ValueError, ZeroDivisionError):
        return None
    return -q if sign == "-" else q


def _format_number(q: Fraction) -> str:
    """Canonical spelling: integers plain, terminating fractions as decimals, else p/q."""
    if q.denominator == 1:
        return str(q.numerator)
    d, k2, k5 = q.denominator, 0, 0
    while d % 2 == 0:
        d //= 2
        k2 += 1
    while d % 5 == 0:
        d //= 5
        k5 += 1
    if d != 1:
        return f"{q.numerator}/{q.denominator}"
    k = max(k2, k5)
    scaled = abs(q.numerator) * 10**k // q.denominator
    digits = str(scaled).rjust(k + 1, "0")
    return ("-" if q < 0 else "") + digits[:-k] + "." + digits[-k:]


def _numeric_prep(s: str) -> str:
    s = _TEXT_CMD.sub(lambda m: " " + m.group(1) + " ", s)
    s = _LATEX_FRAC.sub(lambda m: f"{m.group(1) or m.group(2)}/{m.group(3) or m.group(4)}", s)
    for a, b in (("\\$", " "), ("$", " "), ("\\%", " "), ("%", " "), ("\\!", ""), ("\\,", ""),
                 ("\\;", " "), ("\\left", ""), ("\\right", ""), ("\\times", "*"), ("\\cdot", "*"),
                 ("\\div", "/"), ("\\(", " "), ("\\)", " "), ("\\[", " "), ("\\]", " ")):
        s = s.replace(a, b)
    return _THOUSANDS.sub("", s)


def _numbers(s: str) -> list[Fraction]:
    out = []
    for m in _NUMBER.finditer(s):
        q = _to_fraction(m.group(2), m.group(1), m.group(3))
        if q is not None:
            out.append(q)
    return out


def _number_in(fragment: str, *, last: bool) -> Fraction | None:
    """The number an answer fragment states: the value of a pure arithmetic expression, else
    its first (boxes) / last (free text) number, reading the right side of an equation."""
    s = _numeric_prep(fragment)
    if "=" in s:
        rhs = s.rsplit("=", 1)[1]
        if _numbers(rhs):
            s = rhs
    parsed = _parse_arith(s)
    if parsed is not None:
        return parsed[0]
    nums = _numbers(s)
    if not nums:
        return None
    return nums[-1] if last else nums[0]


def _extract_numeric(s: str) -> str | None:
    for content in reversed(_boxes(s)):
        q = _number_in(content, last=False)
        if q is not None:
            return _format_number(q)
    for fragment, last in ((_answer_block(s), True), (_after_last(_HASHES, s), False), (_answer_is(s), False)):
        if fragment:
            q = _number_in(fragment, last=last)
            if q is not None:
                return _format_number(q)
    nums = _numbers(_numeric_prep(s[-4 * MAX_ANSWER_CHARS:]))
    return _format_number(nums[-1]) if nums else None


def _as_number(s: str) -> Fraction | None:
    """The value of a string that is just a number (after unit/currency clean-up)."""
    prep = _numeric_prep(s).strip()
    nums = _numbers(prep)
    if len(nums) == 1:
        return nums[0]
    parsed = _parse_arith(prep)
    return parsed[0] if parsed is not None else None


def _numbers_equal(a: Fraction, b: Fraction) -> bool:
    # Exact for anything written in decimal; the tolerance only absorbs float artefacts in
    # golds such as 0.30000000000000004.
    return a == b or abs(a - b) <= Fraction(1, 10**9) * max(1, abs(a), abs(b))


# ----------------------------------------------------------------------------- safe arithmetic

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


def _parse_arith(s: str) -> tuple[Fraction, tuple[Fraction, ...]] | None:
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


# ----------------------------------------------------------------------------- countdown

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


def _countdown_expr(fragment: str) -> tuple[str, tuple[Fraction, tuple[Fraction, ...]]] | None:
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
        parsed = _parse_arith(side)
        if parsed is not None:
            return re.sub(r"\s+", "", side), parsed
    return None


def _extract_countdown(s: str) -> str | None:
    candidates = list(reversed(_boxes(s)))
    block = _answer_block(s)
    if block:
        candidates.append(block)
    clause = _answer_is(s)
    if clause:
        candidates.append(clause)
    if len(s) <= MAX_ANSWER_CHARS:
        candidates.append(s)
    for c in candidates:
        got = _countdown_expr(c)
        if got is not None:
            return got[0]
    return None


def _countdown_gold(gold: Any) -> tuple[list[int | float], int | float]:
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
        return [num(x) for x in numbers], num(target)
    except (ValueError, TypeError):
        raise ValueError(f"countdown gold {gold!r}: numbers and target must be finite numbers") from None


# ----------------------------------------------------------------------------- math (LaTeX)

_WS = re.compile(r"\s+")


def _clean_math(s: str) -> str | None:
    s = s.strip()
    for _ in range(3):
        for open_, close in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(open_) and s.endswith(close) and len(s) >= len(open_) + len(close):
                s = s[len(open_):len(s) - len(close)].strip()
    s = s.replace("\\displaystyle", "")
    s = _WS.sub(" ", s).strip().rstrip(".,;").strip()
    if not s or len(s) > MAX_ANSWER_CHARS or _PLACEHOLDER.match(s):
        return None
    return s


_INLINE_MATH = re.compile(r"\$([^$]{1,512})\$|\\\((.{1,512}?)\\\)", re.S)


def _extract_math(s: str) -> str | None:
    boxes = _boxes(s)
    if boxes:
        return _clean_math(boxes[-1])
    block = _answer_block(s)
    if block:
        inline = None
        for inline in _INLINE_MATH.finditer(block):
            pass
        got = _clean_math(inline.group(1) or inline.group(2)) if inline else _clean_math(block)
        if got:
            return got
    clause = _answer_is(s)
    return _clean_math(clause) if clause else None


# Formatting-only rewrites: equal keys imply the same mathematical answer.
_MATH_KEY_DROP = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "\\displaystyle", " ")


def _math_key(s: str) -> str:
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    for tok in _MATH_KEY_DROP:
        s = s.replace(tok, "")
    while s.startswith("{") and s.endswith("}") and _balanced(s, 1) == s[1:-1]:
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
        return _to_fraction(num, sign, den)
    return _to_fraction(fnum or snum, sign, fden or sden)


# Inputs sympy can spend unbounded time on: power towers, huge exponents, factorials or
# binomials of big numbers, deep nesting, long strings.
_SYMPY_DANGER = re.compile(
    r"\*\*|\^\s*\{?\s*[-+]?\d{4,}|\^\s*\{[^{}]*\^|\^\s*[\w.]+\s*\^|\d{4,}\s*!|\\binom\s*\{?\s*\d{4,}|\d{200,}"
)
_MAX_VERIFY_CHARS = 256
_MAX_VERIFY_DEPTH = 12


def _verifiable(s: str) -> bool:
    if len(s) > _MAX_VERIFY_CHARS or _SYMPY_DANGER.search(s):
        return False
    depth = deepest = 0
    for c in s:
        if c == "{" or c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == "}" or c == ")":
            depth -= 1
    return deepest <= _MAX_VERIFY_DEPTH


def _mv_parse(math_verify: Any, s: str, timeout: int | None) -> list:
    got = math_verify.parse("\\boxed{" + s + "}", parsing_timeout=timeout)
    if not got:
        got = math_verify.parse(s, parsing_timeout=timeout)
    return got


def _mv_equal(math_verify: Any, parse: Any, a: str, b: str, timeout: int | None) -> bool:
    pa, pb = parse(a), parse(b)
    if not pa or not pb:
        return False
    return bool(
        math_verify.verify(pa, pb, timeout_seconds=timeout) or math_verify.verify(pb, pa, timeout_seconds=timeout)
    )


# The helper process. It is this very file, loaded by path (not through the package, whose
# __init__ may grow imports), so it needs nothing but math-verify in the same interpreter.
_BOOT = (
    "import importlib.util as u, sys\n"
    "s = u.spec_from_file_location('_lm_eval_temporal_answers_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s); s.loader.exec_module(m); m._worker_main()\n"
)


def _worker_main() -> None:  # pragma: no cover - runs in the helper process
    """Serve ``[id, a, b, timeout]`` JSON lines on stdin with ``[id, bool]`` on stdout."""
    import logging
    import time

    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from sympy must not corrupt the protocol
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    parent = os.getppid()

    def orphan_watch() -> None:
        # The parent kills us on timeout; if the parent itself dies, do not linger.
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=orphan_watch, daemon=True).start()
    import math_verify

    cache: dict[tuple[str, int], list] = {}

    def parse(s: str, t: int) -> list:
        key = (s, t)
        if key not in cache:
            if len(cache) > 8192:
                cache.clear()
            try:
                cache[key] = _mv_parse(math_verify, s, t)
            except BaseException:  # noqa: BLE001 - any failure is "unparsable"
                cache[key] = []
        return cache[key]

    out.write(b'["ready"]\n')
    for line in sys.stdin.buffer:
        try:
            rid, a, b, t = json.loads(line)
            t = max(1, int(math.ceil(t)))
        except Exception:  # noqa: BLE001
            continue
        try:
            r = _mv_equal(math_verify, lambda s: parse(s, t), a, b, t)
        except BaseException:  # noqa: BLE001
            r = None
        out.write(json.dumps([rid, r]).encode() + b"\n")


class _MathWorker:
    """One long-lived math-verify helper process per Python process (see module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue | None = None
        self._next = 0
        self._start_failures = 0
        self.timeouts = 0
        self._owner = os.getpid()
        self.disabled = os.environ.get(_WORKER_ENV, "1").strip().lower() in ("0", "false", "no", "off")

    def _start(self) -> bool:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C meant for the parent must not kill it mid-call
            )
        except (OSError, ValueError):
            self._failed_start()
            return False
        lines: queue.Queue = queue.Queue()

        def pump(stream: Any = proc.stdout) -> None:
            for raw in stream:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=pump, daemon=True, name="lm_eval_temporal-math-reader").start()
        try:
            ready = lines.get(timeout=_STARTUP_TIMEOUT_S)
        except queue.Empty:
            ready = None
        if not ready or json.loads(ready) != ["ready"]:
            _kill(proc)
            self._failed_start()
            return False
        self._proc, self._lines = proc, lines
        return True

    def _failed_start(self) -> None:
        self._start_failures += 1
        if self._start_failures >= 3:
            self.disabled = True  # e.g. no usable sys.executable: fall back to in-process

    def _stop(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
        self._proc, self._lines = None, None

    def equal(self, a: str, b: str, timeout: float) -> bool | None:
        """math-verify equivalence in the helper; None when it timed out or is unavailable."""
        with self._lock:
            if self.disabled:
                return None
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                if not self._start():
                    return None
            assert self._proc is not None and self._lines is not None
            self._next += 1
            rid = self._next
            try:
                self._proc.stdin.write(json.dumps([rid, a, b, timeout]).encode() + b"\n")
                self._proc.stdin.flush()
            except (OSError, ValueError):
                self._stop()
                return None
            # The helper's own SIGALRM timeout usually answers first; this is the hard bound
            # for work SIGALRM cannot interrupt.
            deadline = timeout + _KILL_GRACE_S
            while True:
                try:
                    raw = self._lines.get(timeout=deadline)
                except queue.Empty:
                    self.timeouts += 1
                    self._stop()
                    return None
                if raw is None:  # helper died (e.g. out of memory)
                    self._stop()
                    return None
                try:
                    got_id, result = json.loads(raw)
                except ValueError:
                    continue
                if got_id == rid:
                    return None if result is None else bool(result)

    def close(self) -> None:
        if self._owner != os.getpid():  # a forked child must not kill its parent's helper
            return
        with self._lock:
            self._stop()


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


_WORKER = _MathWorker()
_inprocess_lock = threading.Lock()


@atexit.register
def _close_worker() -> None:
    _WORKER.close()


def _reset_after_fork() -> None:
    # A forked child must not share the parent's helper (interleaved requests) or its locks.
    global _WORKER, _inprocess_lock
    _WORKER = _MathWorker()
    _inprocess_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


@lru_cache(maxsize=4096)
def _inprocess_parse(s: str) -> tuple:
    import math_verify

    try:
        return tuple(_mv_parse(math_verify, s, None))
    except Exception:  # noqa: BLE001
        return ()


def _inprocess_equal(a: str, b: str) -> bool:
    """Fallback when the helper is unavailable: the screens in _verifiable are the bound."""
    import logging

    import math_verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:
        with _inprocess_lock:  # sympy caches are not thread-safe
            return _mv_equal(math_verify, lambda s: list(_inprocess_parse(s)), a, b, None)
    except Exception:  # noqa: BLE001
        return False


def _math_equivalent(a: str, b: str) -> bool:
    ka, kb = _math_key(a), _math_key(b)
    if ka == kb:
        return True
    na, nb = _simple_number(ka), _simple_number(kb)
    if na is not None and nb is not None:
        return _numbers_equal(na, nb)
    if not (_verifiable(a) and _verifiable(b)):
        return False
    r = _WORKER.equal(a, b, MATH_TIMEOUT_S)
    if r is None and _WORKER.disabled:
        return _inprocess_equal(a, b)
    return bool(r)


# ----------------------------------------------------------------------------- public API


@lru_cache(maxsize=32_768)
def _extract_cached(text: str, task: str) -> str | None:
    s = _clean(text)
    if task in ("gsm8k", "svamp"):
        return _extract_numeric(s)
    if task == "math500":
        return _extract_math(s)
    if task == "countdown":
        return _extract_countdown(s)
    return _extract_generic(s)


def _extract_generic(s: str) -> str | None:
    boxes = _boxes(s)
    for fragment in ([boxes[-1]] if boxes else []) + [_answer_block(s), _after_last(_HASHES, s), _answer_is(s)]:
        if fragment:
            got = _canonical_generic(fragment)
            if got:
                return got
    return None


def _canonical_generic(s: str) -> str | None:
    q = _as_number(s)
    if q is not None:
        return _format_number(q)
    s = _clean_math(s)
    return s


def extract_answer(text: str | None, task: str) -> str | None:
    """The canonical answer stated in ``text`` for ``task``, or None if nothing parses.

    Never raises for any ``text`` (None, bytes, numbers and arbitrary strings are accepted);
    raises ValueError only for an unknown ``task``. Results are cached per (text, task).
    """
    task = canonical_task(task)
    s = _coerce_text(text)
    if not s:
        return None
    try:
        if len(s) > _CACHE_TEXT_CHARS:
            return _extract_cached.__wrapped__(s[-MAX_TEXT_CHARS:], task)
        return _extract_cached(s, task)
    except Exception:  # noqa: BLE001 - a parser bug must not take an evaluation down
        return None


@lru_cache(maxsize=65_536)
def _equivalent_cached(a: str, b: str, task: str) -> bool:
    if task in ("gsm8k", "svamp"):
        qa, qb = _as_number(a), _as_number(b)
        if qa is not None and qb is not None:
            return _numbers_equal(qa, qb)
        return a.strip() == b.strip()
    if task == "countdown":
        pa, pb = _countdown_expr(a), _countdown_expr(b)
        if pa is None or pb is None:
            return a.strip() == b.strip()
        (va, la), (vb, lb) = pa[1], pb[1]
        return la == lb and va == vb
    if task == "math500":
        return _math_equivalent(a, b)
    qa, qb = _as_number(a), _as_number(b)
    if qa is not None and qb is not None:
        return _numbers_equal(qa, qb)
    return _WS.sub(" ", a).strip().casefold() == _WS.sub(" ", b).strip().casefold()


def equivalent(a: str | None, b: str | None, task: str) -> bool:
    """Whether two extracted answers are the same answer for ``task`` (symmetric, cached).

    None is never equivalent to anything (a step without an answer casts no vote).
    """
    task = canonical_task(task)
    a, b = _coerce_text(a), _coerce_text(b)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if len(a) > MAX_TEXT_CHARS or len(b) > MAX_TEXT_CHARS:
        return False
    if b < a:  # one cache entry per unordered pair
        a, b = b, a
    try:
        return _equivalent_cached(a, b, task)
    except Exception:  # noqa: BLE001
        return False


def normalize_gold(gold: Any, task: str) -> Any:
    """The gold answer in canonical, JSON-serialisable form; ValueError if it is malformed.

    - gsm8k / svamp: a number string (``"18"``, ``"0.5"``) from ``"...#### 18"`` text, a
      number string such as ``"1,000"`` or ``"18.0"``, or an int/float.
    - math500: the LaTeX answer string (a surrounding ``\\boxed{}`` or ``$...$`` removed).
    - countdown: ``[[a, b, c], target]`` from that list/tuple, from ``("a,b,c", "t")`` or from a
      ``{"input": "a,b,c", "output": "t"}`` row (ints where the values are whole).
    - generic: the stripped string (numbers normalised).
    Already-normalised golds come back unchanged.
    """
    task = canonical_task(task)
    if task == "countdown":
        numbers, target = _countdown_gold(gold)
        return [numbers, target]
    if gold is None or isinstance(gold, bool):
        raise ValueError(f"{task} gold {gold!r}: expected a string or a number")
    if isinstance(gold, (int, float, Fraction)):
        if isinstance(gold, float) and not math.isfinite(gold):
            raise ValueError(f"{task} gold {gold!r}: not a finite number")
        q = Fraction(repr(gold)) if isinstance(gold, float) else Fraction(gold)
        return _format_number(q)
    if not isinstance(gold, str):
        raise ValueError(f"{task} gold {gold!r}: expected a string or a number, got {type(gold).__name__}")
    s = _CONTROL.sub("", gold).strip()
    if task in ("gsm8k", "svamp"):
        if "####" in s:
            s = s.rsplit("####", 1)[1]
        q = _as_number(s)
        if q is None:
            raise ValueError(f"{task} gold {gold[:80]!r}: no number found")
        return _format_number(q)
    if task == "math500":
        boxes = _boxes(s)
        got = _clean_math(boxes[-1] if boxes else s)
        if got is None:
            raise ValueError(f"math500 gold {gold[:80]!r}: empty")
        return got
    got = _canonical_generic(s)
    if got is None:
        raise ValueError(f"generic gold {gold[:80]!r}: empty")
    return got


def is_correct(text: str | None, gold: Any, task: str) -> bool:
    """Whether the answer in ``text`` matches ``gold`` (any format :func:`normalize_gold` takes).

    ``text`` may be a whole generation or an already extracted answer. Malformed golds and
    unparsable texts give False; raises ValueError only for an unknown ``task``.
    """
    task = canonical_task(task)
    try:
        g = normalize_gold(gold, task)
    except ValueError:
        return False
    s = _coerce_text(text)
    if not s:
        return False
    try:
        answer = extract_answer(s, task)
        if answer is None and task in ("math500", "generic") and len(s) <= MAX_ANSWER_CHARS and "\n" not in s.strip():
            # A bare, already extracted answer such as "\frac{1}{2}".
            answer = _clean_math(_clean(s))
        if answer is None:
            return False
        if task == "countdown":
            got = _countdown_expr(answer)
            if got is None:
                return False
            value, literals = got[1]
            numbers, target = g
            want = tuple(sorted(Fraction(repr(x)) if isinstance(x, float) else Fraction(x) for x in numbers))
            return literals == want and abs(float(value) - float(target)) < 1e-5
        return equivalent(answer, g, task)
    except Exception:  # noqa: BLE001
        return False
