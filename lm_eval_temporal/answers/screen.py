"""The screen in front of sympy: inputs whose evaluation explodes never reach it.

math-verify hands answers to sympy, which can spend minutes or forever on some inputs; the
per-call deadline of :mod:`.verify` bounds the damage, but a screen costs nothing and frees the
helper at once. :func:`verifiable` says whether a string may be handed over.
"""

from __future__ import annotations

import re

__all__ = ["verifiable", "explodes"]


# Inputs sympy can spend unbounded time on: ``**``, 4+ digit exponents, towers (an exponent that
# holds a power), 4+ digit factorials or binomials, 200+ digit numbers.
_SYMPY_DANGER = re.compile(
    r"\*\*|\^\s*\{?\s*[-+]?\d{4,}|\^\s*\{[^{}]*\^|\^\s*[\w.]+\s*\^|\d{4,}\s*!|\\binom\s*\{?\s*\d{4,}|\d{200,}"
)
_MAX_VERIFY_CHARS = 256
_MAX_VERIFY_DEPTH = 12
# Digit groups ("1{,}000{,}000", "1\,000") would hide a long number from the digit rules.
_DIGIT_GROUPS = re.compile(r"(?<=\d)(?:\{,\}|\\[,;:! ]|,|~)(?=\d{3}(?!\d))")
# Sizing and spacing commands, which only hide what a bracket or a "!" applies to.
_SPACING = re.compile(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])|\\[,;:! ]")
_OPEN, _CLOSE = "({[", ")}]"
_COMMAND = re.compile(r"\\[A-Za-z]+")
_NAME = re.compile(r"\\?[A-Za-z]+")
# Operands whose factorial, Gamma or binomial is cheap: an integer below 1000, a decimal or a
# fraction of such numbers.
_SMALL_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:\.\d+)?|\d{1,3}\s*/\s*\d{1,3}|\\[dt]?frac\{\d{1,3}\}\{\d{1,3}\})")
# What must not appear in a symbolic operand, nor in an exponent.
_EXPLOSIVE = re.compile(r"[!^]|\\(?:Gamma|[dt]?binom|choose|sum|prod)(?![A-Za-z])|\d{4,}")
_GAMMA = re.compile(r"\\Gamma(?![A-Za-z])")
_BINOM = re.compile(r"\\[dt]?binom(?![A-Za-z])")
_CHOOSE = re.compile(r"\\choose(?![A-Za-z])")
# A power of a sum is expanded term by term: (x+1)^{999} takes minutes.
_MAX_SUM_EXPONENT = 99


def _match_back(s: str, j: int) -> int:
    """Index of the bracket opening the one closed at ``s[j]`` (0 if unbalanced)."""
    depth = 0
    for k in range(j, -1, -1):
        if s[k] in _CLOSE:
            depth += 1
        elif s[k] in _OPEN:
            depth -= 1
            if depth == 0:
                return k
    return 0


def _match_forward(s: str, i: int) -> int:
    """Index just past the bracket closing the one opened at ``s[i]`` (len(s) if unbalanced)."""
    depth = 0
    for k in range(i, len(s)):
        if s[k] in _OPEN:
            depth += 1
        elif s[k] in _CLOSE:
            depth -= 1
            if depth == 0:
                return k + 1
    return len(s)


def _operand_before(s: str, i: int) -> str:
    """What a postfix operator (``!``, ``^``) at ``s[i]`` applies to; a leading ``^`` or ``_`` is
    kept so that ``10^{6}!`` reads as the factorial of a power."""
    j = i - 1
    while j >= 0 and s[j].isspace():
        j -= 1
    if j < 0:
        return ""
    if s[j] in _CLOSE:
        k = _match_back(s, j)
    elif s[j].isdigit() or s[j] == ".":
        k = j
        while k > 0 and (s[k - 1].isdigit() or s[k - 1] == "."):
            k -= 1
    elif s[j].isalpha():
        k = j
        while k > 0 and s[k - 1].isalpha():
            k -= 1
        if k > 0 and s[k - 1] == "\\":
            k -= 1
    else:
        return s[j]
    if k > 0 and s[k - 1] in "^_":
        k -= 1
    return s[k:j + 1]


def _operand_after(s: str, i: int) -> tuple[str, int]:
    """The operand starting at ``s[i]`` (a bracketed group, a number, a name) and its end."""
    while i < len(s) and s[i].isspace():
        i += 1
    if i >= len(s):
        return "", i
    if s[i] in _OPEN:
        j = _match_forward(s, i)
    elif s[i].isdigit() or s[i] == ".":
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
    elif s[i] == "\\" or s[i].isalpha():
        m = _NAME.match(s, i)
        j = m.end() if m else i + 1
    else:
        j = i + 1
    return s[i:j], j


def _unwrap(op: str) -> str:
    op = op.strip()
    while len(op) >= 2 and op[0] in _OPEN and _match_forward(op, 0) == len(op):
        op = op[1:-1].strip()
    return op


def _small_operand(op: str) -> bool:
    """Whether a factorial, Gamma or binomial of ``op`` is cheap: a small number, or a symbolic
    expression (``n``, ``(2n+1)``) with no power, factorial or long number inside."""
    op = _unwrap(op)
    if not op or _SMALL_NUMBER.fullmatch(op):
        return True
    if not re.search(r"[A-Za-z]", _COMMAND.sub("", op)):
        return False  # a number we cannot size cheaply: (10^{9}), (10!), 1000
    return not _EXPLOSIVE.search(op)


def _enclosing(s: str, i: int, j: int) -> tuple[str, str]:
    """The text left of ``s[i]`` and right of ``s[j]`` within their innermost bracket pair."""
    depth, a = 0, 0
    for k in range(i - 1, -1, -1):
        if s[k] in _CLOSE:
            depth += 1
        elif s[k] in _OPEN:
            if depth == 0:
                a = k + 1
                break
            depth -= 1
    depth, b = 0, len(s)
    for k in range(j, len(s)):
        if s[k] in _OPEN:
            depth += 1
        elif s[k] in _CLOSE:
            if depth == 0:
                b = k
                break
            depth -= 1
    return s[a:i], s[j:b]


def explodes(s: str) -> bool:
    """Whether evaluating ``s`` may explode in sympy, by these rules:

    - ``!`` (not ``\\!`` or ``!=``): double/multiple factorials (``100!!``) always; otherwise
      the operand must be small (:func:`_small_operand`), so nested factorials (``(10!)!``) and
      factorials of powers or big numbers (``(10^{9})!``, ``10^{6}!``, ``1000!``) are out;
    - ``\\Gamma``, ``\\binom`` / ``\\dbinom`` / ``\\tbinom`` and ``\\choose``: every argument
      must be small (``\\Gamma(10^{6})``, ``\\binom{10^{9}}{10^{8}}`` are out);
    - ``^``: the exponent must not hold a power, factorial, Gamma, binomial, sum or product or
      a 4+ digit number (``2^{100!}``), and a bracketed sum or difference may be raised to at
      most :data:`_MAX_SUM_EXPONENT` (``(x+1)^{999}`` is expanded term by term).
    """
    s = _SPACING.sub(" ", _DIGIT_GROUPS.sub("", s))
    for m in re.finditer(r"!", s):
        i = m.start()
        if s[i + 1:i + 2] == "=":
            continue
        if s[i + 1:i + 2] == "!" or not _small_operand(_operand_before(s, i)):
            return True
    for m in _GAMMA.finditer(s):
        if not _small_operand(_operand_after(s, m.end())[0]):
            return True
    for m in _BINOM.finditer(s):
        first, j = _operand_after(s, m.end())
        if not (_small_operand(first) and _small_operand(_operand_after(s, j)[0])):
            return True
    for m in _CHOOSE.finditer(s):
        if not all(_small_operand(side) for side in _enclosing(s, m.start(), m.end())):
            return True
    for m in re.finditer(r"\^", s):
        exponent = _unwrap(_operand_after(s, m.end())[0])
        if _EXPLOSIVE.search(exponent):
            return True
        base = _operand_before(s, m.start())
        if (re.fullmatch(r"[-+]?\d+", exponent) and abs(int(exponent)) > _MAX_SUM_EXPONENT
                and base[:1] in _OPEN and re.search(r"(?<=.)[-+]", _unwrap(base))):
            return True
    return False


def verifiable(s: str) -> bool:
    """Whether ``s`` may be handed to sympy: short, shallow and not explosive (:func:`explodes`)."""
    if len(s) > _MAX_VERIFY_CHARS or _SYMPY_DANGER.search(s):
        return False
    depth = deepest = 0
    for c in s:
        if c == "{" or c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == "}" or c == ")":
            depth -= 1
    return deepest <= _MAX_VERIFY_DEPTH and not explodes(s)
