"""lm_eval_temporal.answers: formats, normalisation, equivalence, gold formats (hand-checked)."""

from __future__ import annotations

import json

import pytest

from lm_eval_temporal import answers as A
from lm_eval_temporal.answers import equivalent, extract_answer, is_correct, normalize_gold

EOT = "<|eot_id|>" + "<|endoftext|>" * 20


# ----------------------------------------------------------------------------- tasks


def test_tasks_and_aliases():
    assert A.TASKS == ("gsm8k", "svamp", "math500", "countdown", "generic")
    assert A.canonical_task("math") == "math500"
    assert A.canonical_task(" GSM8K ") == "gsm8k"
    assert extract_answer("\\boxed{3}", "math") == extract_answer("\\boxed{3}", "math500") == "3"
    for bad in ("gsm8k_temporal", "", None, 3):
        with pytest.raises(ValueError, match="gsm8k, svamp, math500, countdown, generic, math"):
            extract_answer("1", bad)
    with pytest.raises(ValueError, match="unknown answer task"):
        equivalent("1", "1", "mmlu")
    with pytest.raises(ValueError):
        is_correct("1", "1", "mmlu")


# ----------------------------------------------------------------------------- numeric tasks


@pytest.mark.parametrize("text, want", [
    ("<reasoning>9 * 2 = 18</reasoning>\n<answer>\n\\boxed{18}" + EOT, "18"),  # paper protocol
    ("Janet makes 2*9=18 dollars.\n#### 18", "18"),  # lm-eval gsm8k
    ("so she pays 5 + 13 = 18.\nThe answer is 18.", "18"),
    ("first 3, then 7, finally 18", "18"),  # last-number fallback
    ("\\boxed{\\$18.00}", "18"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("\\boxed{1,234}", "1234"),
    ("#### 1,234,567", "1234567"),
    ("\\boxed{1{,}000}", "1000"),
    ("\\boxed{50\\%}", "50"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{\\dfrac12}", "0.5"),
    ("\\boxed{1/3}", "1/3"),
    ("\\boxed{-3}", "-3"),
    ("\\boxed{x = 7}", "7"),
    ("\\boxed{2 \\times 9 = 18}", "18"),
    ("\\boxed{20 + 80 + 160}", "260"),  # a pure arithmetic box is evaluated
    ("<answer>\nShe has 5 apples and 7 pears, 12 fruits.\n</answer>", "12"),  # last number of the block
    ("\\boxed{5} then later \\boxed{7}", "7"),  # last box wins
    ("\\boxed{...} ... 42", "42"),  # the prompt's placeholder box is skipped
    ("<answer>\n\\boxed{120\n</answer}" + EOT, "120"),  # a box the model never closed
    ("no numbers here", None),
    ("", None),
])
def test_numeric_extraction(text, want):
    assert extract_answer(text, "gsm8k") == want
    assert extract_answer(text, "svamp") == want


def test_numeric_equivalence_one_cluster():
    forms = ["18", "18.0", "$18", "18 dollars", "\\$18.00", "18.000"]
    for a in forms:
        for b in forms:
            assert equivalent(a, b, "gsm8k"), (a, b)
    assert equivalent("0.5", "1/2", "svamp") and equivalent("\\frac{1}{2}", "0.50", "gsm8k")
    assert not equivalent("18", "19", "gsm8k")
    assert not equivalent("0.333", "1/3", "gsm8k")
    assert not equivalent(None, "18", "gsm8k") and not equivalent(None, None, "gsm8k")


def test_numeric_gold_formats():
    assert normalize_gold("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "gsm8k") == "72"
    assert normalize_gold("#### 1,000", "gsm8k") == "1000"
    assert normalize_gold(18.0, "gsm8k") == "18"
    assert normalize_gold(0.5, "gsm8k") == "0.5"
    assert normalize_gold("27", "svamp") == normalize_gold(27.0, "svamp") == normalize_gold(27, "svamp") == "27"
    assert normalize_gold(normalize_gold("#### 72", "gsm8k"), "gsm8k") == "72"  # idempotent
    for bad in (None, "no number", float("nan"), float("inf"), [1], {}, True):
        with pytest.raises(ValueError):
            normalize_gold(bad, "gsm8k")
    assert is_correct("<answer>\\boxed{72}</answer>", "blah\n#### 72", "gsm8k")
    assert is_correct("#### 72", 72.0, "gsm8k")
    assert is_correct("72", "72", "gsm8k")  # already extracted answers work too
    assert not is_correct("#### 71", 72.0, "gsm8k")
    assert not is_correct("#### 72", "garbage", "gsm8k")  # malformed gold: False, no exception


@pytest.mark.parametrize("text, want", [
    ("The answer is 1e3", "1000"),  # was "1", matching gold 1 and not 1000
    ("\\boxed{1.5e3}", "1500"),  # was "1.5"
    ("The answer is 2E-2.", "0.02"),
    ("\\boxed{4.2e+2}", "420"),
    ("\\boxed{-1.5e3}", "-1500"),
    ("\\boxed{1.5 \\times 10^{3}}", "1500"),
    ("\\boxed{1.5\\cdot 10^3}", "1500"),
    ("The answer is 1.5 \u00d7 10^3 meters.", "1500"),  # Unicode times sign, and a unit
    ("#### 1.5\u00b710^3", "1500"),
    ("$3 \\times 10^{4}$ dollars", "30000"),
    ("\\boxed{10^{6}}", "1000000"),
    ("\\boxed{10^{-2}}", "0.01"),
    ("\\boxed{1,500 \\times 10^3}", "1500000"),
    ("\\boxed{2 \\times 10^{3} + 5}", "2005"),  # still arithmetic
    ("\\boxed{6/3 \\times 10^2}", "200"),  # (6/3)*100, not 6/300
    ("\\boxed{1/10^3}", "0.001"),
    ("The answer is 1e999", None),  # beyond any answer: not read as 1
    # Not scientific notation: "e" in words, at the end of a word, in hex-like strings.
    ("the answer is 3 eggs", "3"),
    ("She has 3e", "3"),
    ("the answer is 3eggs", "3"),
    ("the answer is 1e3f", "1"),
    ("0x1e3", "0"),
    ("ab1e3", None),
    ("1e3x and then 7", "7"),
    ("There are 5 eggs; 3 eggs used. The answer is 2", "2"),
])
def test_numeric_scientific_notation(text, want):
    assert extract_answer(text, "gsm8k") == want
    assert extract_answer(text, "svamp") == want


def test_numeric_scientific_notation_against_golds():
    assert is_correct("The answer is 1e3", 1000, "gsm8k")
    assert not is_correct("The answer is 1e3", 1, "gsm8k")
    assert is_correct("\\boxed{1.5e3}", "1500", "svamp")
    assert not is_correct("\\boxed{1.5e3}", "1.5", "svamp")
    assert is_correct("The answer is 2E-2", 0.02, "gsm8k")
    assert is_correct("\\boxed{1.5 \\times 10^{3}}", "#### 1,500", "gsm8k")
    assert is_correct("\\boxed{1.5\\cdot 10^3}", 1500.0, "svamp")
    assert is_correct("so it is 1.5 \u00d7 10^3", "1500", "gsm8k")
    assert is_correct("the answer is 3 eggs", 3, "gsm8k")
    assert normalize_gold("1e3", "gsm8k") == normalize_gold("1.0 \\times 10^3", "svamp") == "1000"
    assert equivalent("1.5e3", "1500", "gsm8k") and equivalent("2E-2", "0.02", "svamp")
    assert not equivalent("1e3", "1", "gsm8k")


# ----------------------------------------------------------------------------- math500


@pytest.mark.parametrize("text, want", [
    ("<reasoning>..</reasoning>\n<answer>\n\\boxed{\\frac{1}{2}}\n</answer>" + EOT, "\\frac{1}{2}"),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("first \\boxed{2} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # last box wins
    ("$\\boxed{ x = 5 }$.", "x = 5"),
    ("\\fbox{7}", "7"),
    ("\\boxed 5$", "5"),
    ("<answer>\nThe roots are $x=3$ and $x=5$.\n</answer>", "x=5"),
    ("<answer>\n\\text{(C)}\n</answer>", "\\text{(C)}"),
    ("So the final answer is $\\dfrac{3}{4}$.", "\\dfrac{3}{4}"),
    ("Respond with \\boxed{...}", None),  # template echo
    ("a long derivation without any final answer", None),
])
def test_math_extraction(text, want):
    assert extract_answer(text, "math500") == want


def test_math_equivalence():
    assert equivalent("\\frac{1}{2}", "0.5", "math500")
    assert equivalent("0.5", "1/2", "math500")
    assert equivalent("\\frac{1}{2}", "1/2", "math500")
    assert equivalent("\\dfrac{1}{2}", "\\frac12", "math500")
    assert not equivalent("\\frac{1}{3}", "0.33", "math500")
    assert not equivalent("2", "3", "math500")
    # Through math-verify (the helper process).
    assert equivalent("\\text{(C)}", "C", "math500")
    assert equivalent("\\{1,2\\}", "\\{2, 1\\}", "math500")
    assert equivalent("(-\\infty, 3]", "(-\\infty,3]", "math500")
    assert equivalent("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", "math500")
    assert equivalent("x^2-1", "(x-1)(x+1)", "math500")
    assert equivalent("16\\sqrt{3}", "16 \\sqrt3", "math500")
    assert not equivalent("x^2+1", "(x+1)^2", "math500")


def test_math_gold_and_is_correct():
    assert normalize_gold("\\boxed{\\frac{1}{2}}", "math500") == "\\frac{1}{2}"
    assert normalize_gold("$16 \\sqrt{3}$", "math") == "16 \\sqrt{3}"
    with pytest.raises(ValueError):
        normalize_gold("   ", "math500")
    assert is_correct("<answer>\\boxed{0.5}</answer>", "\\frac{1}{2}", "math500")
    assert is_correct("\\frac{1}{2}", "0.5", "math500")  # a bare extracted answer
    assert is_correct("\\boxed{\\text{(C)}}", "C", "math500")
    assert not is_correct("\\boxed{3}", "\\frac{1}{2}", "math500")
    assert not is_correct(None, "1", "math500")


# ----------------------------------------------------------------------------- countdown


def test_countdown_extraction():
    assert extract_answer("<answer>\n\\boxed{49 + 55 - 53}\n</answer>" + EOT, "countdown") == "49+55-53"
    assert extract_answer("\\boxed{(49+55)-53 = 51}", "countdown") == "(49+55)-53"  # "= target" dropped
    assert extract_answer("\\boxed{51 = 55 - 53 + 49}", "countdown") == "55-53+49"
    assert extract_answer("\\boxed{3 \\times (4 \\div 2)}", "countdown") == "3*(4/2)"
    assert extract_answer("\\boxed{\\frac{98}{2} - 3}", "countdown") == "((98)/(2))-3"
    assert extract_answer("\\boxed{a + b * c}", "countdown") is None  # the prompt's example
    assert extract_answer("(49+55)-53", "countdown") == "(49+55)-53"  # an extracted answer
    assert extract_answer("\\boxed{49 + 55 - 53><|eot_id|>", "countdown") == "49+55-53"  # unclosed box
    assert extract_answer("I think it is hard.", "countdown") is None


def test_countdown_equivalence_and_correctness():
    assert equivalent("(49+55)-53", "55-53+49", "countdown")  # same value, same numbers
    assert not equivalent("49+55-53", "49-55+53", "countdown")  # different value
    assert not equivalent("50+1", "49+2", "countdown")  # same value, different numbers
    golds = [[[49, 55, 53], 51], ([49, 55, 53], 51), {"input": "49,55,53", "output": "51"}, ("49,55,53", "51"),
             "[[49, 55, 53], 51]"]
    for gold in golds:
        assert is_correct("\\boxed{(49 + 55) - 53}", gold, "countdown"), gold
        assert not is_correct("\\boxed{49 + 55 + 53}", gold, "countdown")  # wrong value
        assert not is_correct("\\boxed{55 - 4}", gold, "countdown")  # numbers not used
        assert not is_correct("\\boxed{49 + 55 - 53 + 0}", gold, "countdown")  # extra number
    assert normalize_gold({"input": "30,100,93", "output": "23"}, "countdown") == [[30, 100, 93], 23]
    assert json.loads(json.dumps(normalize_gold(([1, 2, 3], 6.0), "countdown"))) == [[1, 2, 3], 6]
    assert is_correct("\\boxed{52 / 4 * 2}", [[52, 4, 2], 26], "countdown")
    assert is_correct("\\boxed{7/2*4}", [[7, 2, 4], 14], "countdown")  # exact fractions
    assert not is_correct("\\boxed{100/3*3 - 0}", [[100, 3, 3, 0], 99.99], "countdown")
    for bad in (None, [1, 2], "1,2,3", {"input": "1,2"}, [[1, "x"], 3], [[], 3], [[1, 2], float("nan")]):
        with pytest.raises(ValueError):
            normalize_gold(bad, "countdown")
        assert not is_correct("\\boxed{1+2}", bad, "countdown")


# ----------------------------------------------------------------------------- generic


def test_generic():
    assert extract_answer("#### B", "generic") == "B"
    assert extract_answer("The answer is Paris.", "generic") == "Paris"
    assert extract_answer("\\boxed{18.0}", "generic") == "18"
    assert extract_answer("just talking 12", "generic") is None  # no last-number guessing
    assert equivalent("paris", "Paris", "generic") and equivalent("18", "18.00", "generic")
    assert is_correct("The answer is Paris.", "paris", "generic")


# ----------------------------------------------------------------------------- caching


def test_extraction_and_equivalence_are_cached():
    text = "cache probe: 2 + 2 = 4\n#### 4"
    A.clear_caches()
    extract_answer(text, "gsm8k")
    extract_answer(text, "gsm8k")
    assert A.cache_info()["extract"].hits == 1
    equivalent("7", "7.0", "gsm8k")
    equivalent("7.0", "7", "gsm8k")  # one entry per unordered pair
    info = A.cache_info()["equivalent"]
    assert (info.hits, info.currsize) == (1, 1)
