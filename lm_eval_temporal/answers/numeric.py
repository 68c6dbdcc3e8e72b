"""Numbers as answers: GSM8K and SVAMP, and any answer that turns out to be a number.

Models write the same number many ways (``18``, ``18.0``, ``$18``, ``18 \\text{ dollars}``,
``1,234``, ``\\frac{1}{2}``), so answers are compared by exact rational value, never as
strings or floats, and spelled in one canonical form: integers plain, terminating fractions
as decimals, others as ``p/q``. For GSM8K and SVAMP the first rule that yields a number wins:
the last box holding one, the ``<answer>`` block (its last number), ``#### N``, "the answer
is N", then the last number in the text.
"""

from __future__ import annotations

import re
from fractions import Fraction

from lm_eval_temporal.answers.arith import parse_arith
from lm_eval_temporal.answers.text import MAX_ANSWER_CHARS, after_hashes, answer_block, answer_is, boxes

# Numbers longer than this are not answers (and int() refuses > 4300 digits anyway).
_MAX_DIGITS = 60

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))|(?<=\d)\{,\}(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(?<![\w.])(-?)(\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(\d+(?:\.\d+)?))?")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{\s*(-?[\d.]+)\s*\}|(\d))\s*(?:\{\s*(-?[\d.]+)\s*\}|(\d))")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]{0,200})\}")
# Scientific notation: "1.5e3", "2E-2", and "1.5 * 10^{3}" / "10^3" once \times, \cdot and the
# Unicode multiplication signs are "*". The mantissa and the exponent stand apart from words
# ("3eggs", "0x1e3", "1e3f" are not numbers in this notation), and the exponent is an integer
# that no "^" follows (no towers).
_SCI = re.compile(
    r"(?<![\w.])(?P<e_mant>\d+(?:\.\d+)?|\.\d+)[eE](?P<e_exp>[-+]?\d{1,4})(?!\w|\.\d)"
    r"|(?<![\w.])(?:(?P<mant>\d+(?:\.\d+)?|\.\d+)\s*[*\u00d7\u00b7\u22c5]\s*)?(?P<pow>10\s*\^\s*"
    r"(?:\{\s*(?P<braced>[-+]?\d{1,4})\s*\}|(?P<bare>[-+]?\d{1,4})(?!\w|\.\d)))(?!\s*\^)"
)


def to_fraction(num: str, sign: str = "", den: str | None = None) -> Fraction | None:
    """``sign num / den`` as an exact fraction; None when too long or a division by zero."""
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


def exact(x: int | float | Fraction) -> Fraction:
    """A Python number as the fraction its spelling means (``0.1`` is 1/10, not the float)."""
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


def format_number(q: Fraction) -> str:
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
    return _SCI.sub(_plain_decimal, _THOUSANDS.sub("", s))


def _plain_decimal(m: re.Match) -> str:
    """A number in scientific notation spelled out ("1.5e3" -> "1500"); a blank if too long.

    After a "/" or "^" only the power of ten is spelled out, so that ``6/3 * 10^2`` keeps
    reading as (6/3) * 100."""
    if m.group("e_exp") is not None:
        mant, exp, keep = m.group("e_mant"), m.group("e_exp"), ""
    else:
        mant, exp, keep = m.group("mant"), m.group("braced") or m.group("bare"), ""
        j = m.start() - 1
        while j >= 0 and m.string[j].isspace():
            j -= 1
        if mant is not None and j >= 0 and m.string[j] in "/^":
            mant, keep = None, m.string[m.start():m.start("pow")]
    k = int(exp)
    if abs(k) > _MAX_DIGITS or (mant is not None and len(mant) > _MAX_DIGITS):
        return keep + " "  # beyond what an answer can be (and what int() reads)
    return keep + format_number(Fraction(mant or "1") * Fraction(10) ** k)


def _numbers(s: str) -> list[Fraction]:
    out = []
    for m in _NUMBER.finditer(s):
        q = to_fraction(m.group(2), m.group(1), m.group(3))
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
    parsed = parse_arith(s)
    if parsed is not None:
        return parsed[0]
    nums = _numbers(s)
    if not nums:
        return None
    return nums[-1] if last else nums[0]


def extract_numeric(s: str) -> str | None:
    """The GSM8K / SVAMP answer in a cleaned generation, canonically spelled, or None."""
    for content in reversed(boxes(s)):
        q = _number_in(content, last=False)
        if q is not None:
            return format_number(q)
    for fragment, last in ((answer_block(s), True), (after_hashes(s), False), (answer_is(s), False)):
        if fragment:
            q = _number_in(fragment, last=last)
            if q is not None:
                return format_number(q)
    nums = _numbers(_numeric_prep(s[-4 * MAX_ANSWER_CHARS:]))
    return format_number(nums[-1]) if nums else None


def as_number(s: str) -> Fraction | None:
    """The value of a string that is just a number (after unit/currency clean-up)."""
    prep = _numeric_prep(s).strip()
    nums = _numbers(prep)
    if len(nums) == 1:
        return nums[0]
    parsed = parse_arith(prep)
    return parsed[0] if parsed is not None else None


def numbers_equal(a: Fraction, b: Fraction) -> bool:
    # Exact for anything written in decimal; the tolerance only absorbs float artefacts in
    # golds such as 0.30000000000000004.
    return a == b or abs(a - b) <= Fraction(1, 10**9) * max(1, abs(a), abs(b))


def same_number(a: str, b: str) -> bool | None:
    """Whether two answers are the same number; None unless both are numbers."""
    qa, qb = as_number(a), as_number(b)
    if qa is not None and qb is not None:
        return numbers_equal(qa, qb)
    return None


def numeric_equivalent(a: str, b: str) -> bool:
    """GSM8K / SVAMP: by value; answers that are not numbers only when spelled alike."""
    same = same_number(a, b)
    return a.strip() == b.strip() if same is None else same


def number_gold(s: str) -> str | None:
    """A GSM8K / SVAMP reference (``"...#### 18"``, ``"1,000"``, ``"18.0"``) canonically spelled."""
    if "####" in s:
        s = s.rsplit("####", 1)[1]
    q = as_number(s)
    return None if q is None else format_number(q)
