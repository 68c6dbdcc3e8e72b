"""MATH500, default protocol: which box is the answer when a text has several.

The rule (lm_eval_temporal/answers/latex.py, ``final_boxes``): the last box wins -- a partly
denoised canvas often holds a stale box and a new one, and models restate an answer in a second
box -- except for one answer in several parts: in a generation, boxes on one line separated from
the next one only by a comma and/or "and" (perhaps naming the next part, "and y =") are joined
by ", " and compared as a set by math-verify; in a gold, boxes math-verify itself joins.

The "last box wins" cases are tails of real LLaDA-8B-Instruct outputs
(``llada_generations/math500_instruct_256_128_<file>_generations.json``, item index), copied by
hand; a data test re-reads them and checks every real output with a box. The multi-part cases
are the issue's examples: the real final outputs hold none (measured: the rule fires on none of
the 1831 final texts with a box in llada_generations/, all tasks, so default-mode accuracy on
those files is unchanged).
"""

from __future__ import annotations

import json

import offline_data
import pytest

from lm_eval_temporal.answers import equivalent, extract_answer, is_correct, normalize_gold
from lm_eval_temporal.answers.latex import clean_math, final_boxes
from lm_eval_temporal.answers.text import boxes, clean

DATA = offline_data.DATA
GENERATIONS = DATA / "llada_generations"
EOT = "<|eot_id|><|endoftext|>"

# (file, index): tail of the real final text, the answer, the gold.
REAL = {
    # Two answer blocks, a stale \boxed{10} then \boxed{8}: successive attempts, the last one is
    # the answer (here the wrong one: the rule costs this item, by design).
    (4, 20): ("\n<answer>\n\\boxed{10}\n</answer>\n\n<answer>\n\\boxed{8}\n</answer>" + EOT, "8", "10"),
    # The answer restated in a second box, on another line.
    (3, 42): ("Thus, the final answer is \\( \\boxed{1} \\).\n\n</answer>\n\\boxed{1}" + EOT, "1", "\\frac{1}{8}"),
    (1, 72): ("\\[ n = \\boxed{7} \\]\n</reasoning>\n\n<answer>\n\\boxed{7}\n</answer>" + EOT, "7", "7"),
    (1, 34): ("\\[\n\\boxed{17}\n\\]\n\n</answer>\n<answer>\n\\boxed{17}\n\\]" + EOT, "17", "17"),
    (5, 53): ("the measure of $\\angle STR$ is $\\boxed{75^\\circ}$.\n</reasoning>\n\n\\boxed{75^\\circ}" + EOT,
              "75^\\circ", "75^\\circ"),
    # Nested boxes are one box.
    (1, 16): ("</reasoning>\n\n\\boxed{\\boxed{1}}" + EOT, "1", "\\frac{11}{36}"),
    (5, 62): ("</reasoning>\n\n\\boxed{\\boxed{\\frac{1}{5}}}" + EOT, "\\frac{1}{5}", "\\frac{1}{3}"),
}


@pytest.mark.parametrize("key", sorted(REAL))
def test_successive_boxes_last_wins(key):
    tail, want, gold = REAL[key]
    assert extract_answer(tail, "math500") == want
    assert is_correct(tail, gold, "math500") == (want == gold)


@pytest.mark.parametrize("text, want", [
    ("\\boxed{(1, 2)}, \\boxed{(2, 1)}", "(1, 2), (2, 1)"),
    ("\\boxed{1} and \\boxed{-2}", "1, -2"),
    ("The solutions are $\\boxed{(1, 2)}$, $\\boxed{(2, 1)}$.", "(1, 2), (2, 1)"),
    ("The roots are $\\boxed{3}$, $\\boxed{5}$, and $\\boxed{7}$.", "3, 5, 7"),
    ("\\boxed{x=1} \\text{ and } \\boxed{x=-2}", "x=1, x=-2"),
    # Not one answer: other words, a space only, another line, or a placeholder before the box.
    ("first \\boxed{2} then \\boxed{3}", "3"),
    ("\\boxed{3\\sqrt{2}} \\boxed{4}", "4"),
    ("\\boxed{2},\n\\boxed{3}", "3"),
    ("$\\boxed{15\\frac{39}{40}},$ or $\\boxed{\\frac{639}{40}}$ inches.", "\\frac{639}{40}"),  # MATH-500 #451's solution
    ("\\boxed{...}, \\boxed{5}", "5"),
    ("\\boxed{1}, \\boxed{2", "2"),  # unclosed last box: read alone
])
def test_multi_part_answers(text, want):
    assert extract_answer(text, "math500") == want


def test_multi_part_answers_are_scored_as_sets():
    assert is_correct("\\boxed{(1, 2)}, \\boxed{(2, 1)}", "(2,1), (1,2)", "math500")
    assert is_correct("\\boxed{1} and \\boxed{-2}", "-2, 1", "math500")
    assert not is_correct("\\boxed{1} and \\boxed{-2}", "-2", "math500")
    assert equivalent("1, -2", "-2, 1", "math500")
    # The paper protocol keeps the official last box.
    assert extract_answer("\\boxed{1} and \\boxed{-2}", "math500", protocol="paper") == "-2"


# Math-Verify's own regression cases (huggingface/Math-Verify, tests/test_all.py
# test_math_extraction_additional_cases and tests/test_boxed.py; there ``compare_strings(gold,
# pred)`` is 1): golds whose boxes are one answer, and a prediction that boxes the parts of its
# answer separately with words between them.
MATH_VERIFY_CASES = [
    ("$\\boxed{1}\\boxed{2}$", "$\\boxed{1,2}$"),  # adjacent boxes in the gold
    ("$\\\\boxed{35 cm} ++++++ \\\\boxed{4}$", "${35 cm,4}$"),  # separated by a short run of text
    ("... This factors as $(n - 1)(n + 2) = 0,$ so the solutions are $n = \\boxed{1,-2}.$",
     "**Final Answer** The integers are \\boxed{-2} and \\boxed{1}. </think> ... Thus, the integers "
     "\\( n \\) such that \\( f(n) = n \\) are: \\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]"),
]


@pytest.mark.parametrize("gold, pred", MATH_VERIFY_CASES)
def test_math_verify_multi_box_cases(gold, pred):
    assert is_correct(pred, gold, "math500")


@pytest.mark.parametrize("gold, want", [
    ("$\\boxed{1}\\boxed{2}$", "1, 2"),
    ("\\boxed{1} \\boxed{2}", "1, 2"),
    ("the roots are $\\boxed{2}$ or $\\boxed{3}$", "2, 3"),
    ("\\boxed{A}; and the other is \\boxed{B}", "A, B"),
    ("\\boxed{5} and \\boxed{5}", "5"),  # the parts agree: one answer
    ("\\boxed{2} is wrong. Checking each step again very carefully from the start shows that it is \\boxed{3}",
     "3"),  # too far apart
])
def test_gold_boxes_read_as_math_verify_reads_them(gold, want):
    assert normalize_gold(gold, "math500") == want


@pytest.mark.parametrize("text, want", [
    ("So $x = \\boxed{1}$ and $y = \\boxed{2}$.", "1, 2"),  # parts named with words between them
    ("a_1 = \\boxed{3}, a_{2} = \\boxed{5}", "3, 5"),
    ("\\boxed{7} and \\boxed{7}", "7"),
    ("\\boxed{1}\\boxed{2}", "2"),  # a generation's adjacent boxes stay apart: likely a stale box
    ("$x = \\boxed{2}$ or $x = \\boxed{3}$", "3"),
])
def test_generation_parts_with_words_between(text, want):
    assert extract_answer(text, "math500") == want
    if "," in want:  # scored as a set: the parts in another order are the same answer
        assert is_correct(text, ", ".join(reversed(want.split(", "))), "math500")


def test_gold_written_as_a_solution():
    gold = "Of the 25 students, 7 ... so the share is 7/25.  The final answer is $28\\%$."
    assert normalize_gold(gold, "math500") == "28\\%"
    assert is_correct("\\boxed{28\\%}", gold, "math500")
    assert normalize_gold("so $x = 1$ or $x = -2$, i.e. $\\boxed{1}$ and $\\boxed{-2}$.", "math500") == "1, -2"
    assert normalize_gold("\\boxed{\\frac{1}{2}}", "math500") == "\\frac{1}{2}"  # unchanged forms
    assert normalize_gold("x \\in [-2,7]", "math500") == "x \\in [-2,7]"


def _final_texts():
    files = sorted(GENERATIONS.glob("math500_instruct_256_128_*_generations.json"))
    if not files:
        pytest.skip(f"no generation files: {GENERATIONS} is missing (set LM_EVAL_TEMPORAL_DATA)")
    out = {}
    for path in files:
        with path.open(encoding="utf-8") as f:
            for i, g in enumerate(json.load(f)["generations"]):
                out[(int(path.name.split("_")[4]), i)] = (g["generations"], g["ground_truth"])
    return out


def test_pinned_tails_are_the_real_outputs():
    texts = _final_texts()
    for key, (tail, want, gold) in REAL.items():
        text, real_gold = texts[key]
        assert text.endswith(tail), key
        assert real_gold == gold, key
        assert extract_answer(text, "math500") == want, key


def test_real_outputs_keep_the_last_box():
    """No final text in the files states a multi-part answer: the rule reads each as before."""
    for key, (text, _) in _final_texts().items():
        s = clean(text)
        found = boxes(s)
        if found:
            assert final_boxes(s, found) == clean_math(found[-1]), key
