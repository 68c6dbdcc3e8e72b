"""Bad input never escapes as an exception, never hangs and is never executed (issue §5)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_eval_temporal import answers as A
from lm_eval_temporal.answers import equivalent, extract_answer, is_correct
from lm_eval_temporal.answers import verify as V  # the math-verify helper's globals live here

REPO = Path(__file__).resolve().parent.parent
# Generous: a single call is microseconds to milliseconds; this only catches hangs.
BOUND_S = 2.0

HOSTILE = {
    "1 MB": "reasoning 12 + 7 = 19. " * 45_000 + "\\boxed{42}",
    "200k unbalanced {": "\\boxed{" + "{" * 200_000,
    "200k boxes": "\\boxed{" * 30_000,
    "200k closing }": "}" * 200_000 + "<answer>" + "{" * 1000,
    "nested frac 5000": "\\boxed{" + "\\frac{1}{" * 5000 + "2" + "}" * 5001,
    "nested frac 40": "\\boxed{" + "\\frac{1}{" * 40 + "2" + "}" * 41,
    "control chars": "\x00\x01\x1b[31m\u202e\u200b\ufeff<answer>\\boxed{1\u200b8}\x07</answer>\x7f",
    "power tower": "\\boxed{9**9**9**9}",
    "latex power tower": "\\boxed{9^{9^{9^{9}}}}",
    "import": "\\boxed{__import__('os').system('touch /tmp/lm_eval_temporal_pwned')}",
    "lambda": "<answer>(lambda: 1)()</answer>",
    "huge int": "\\boxed{" + "9" * 100_000 + "}",
    "huge int line": "The answer is " + "7" * 5000,
    "huge literal in expr": "\\boxed{" + "1" * 30 + " + 2}",
    "division by zero": "\\boxed{1/0 + 2 - 1}",
    "deep parens": "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}",
    "only special tokens": "<|eot_id|>" * 1000 + "<|endoftext|>" * 1000,
    "empty": "",
    "whitespace": " \n\t ",
    "surrogates": "\ud800\udfff \\boxed{\ud83d}",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("task", A.TASKS)
def test_hostile_texts(name, task):
    text = HOSTILE[name]
    t = time.perf_counter()
    got = extract_answer(text, task)
    assert got is None or (isinstance(got, str) and len(got) <= A.MAX_ANSWER_CHARS)
    gold = [[1, 2, 3], 6] if task == "countdown" else "18"
    assert is_correct(text, gold, task) in (True, False)
    assert equivalent(got, "1", task) in (True, False)
    assert time.perf_counter() - t < BOUND_S, name


def test_nothing_is_executed():
    marker = Path("/tmp/lm_eval_temporal_pwned")
    marker.unlink(missing_ok=True)
    for task in A.TASKS:
        extract_answer(HOSTILE["import"], task)
        is_correct(HOSTILE["import"], [[1, 2, 3], 6], "countdown")
    assert not marker.exists()
    assert extract_answer(HOSTILE["import"], "countdown") is None
    assert extract_answer(HOSTILE["power tower"], "countdown") is None


def test_specific_hostile_values():
    assert extract_answer(HOSTILE["1 MB"], "gsm8k") == "42"  # read from the end, quickly
    assert extract_answer(HOSTILE["control chars"], "gsm8k") == "18"
    assert extract_answer(HOSTILE["huge int"], "gsm8k") is None
    assert extract_answer(HOSTILE["huge int line"], "math500") is None  # over-long: dropped, not cut
    assert extract_answer(HOSTILE["division by zero"], "countdown") is None


@pytest.mark.parametrize("a", [
    "9^{9^{9^{9}}}", "9^9^9^9", "10^{100000000}", "100000!", "\\binom{1000000}{500000}",
    "2^{2^{2^{2^{2}}}}", "\\frac{1}{" * 30 + "x" + "}" * 30, "x" * 10_000,
])
def test_math_equivalence_screens_sympy_bombs(a):
    t = time.perf_counter()
    assert equivalent(a, "1", "math500") is False
    assert time.perf_counter() - t < BOUND_S


@pytest.mark.parametrize("text, gold, task", [
    (None, "1", "gsm8k"), ("", "1", "gsm8k"), (b"#### 5", "5", "gsm8k"), (5, "5", "gsm8k"),
    (["#### 5"], "5", "gsm8k"), ("#### 5", None, "gsm8k"), ("#### 5", float("nan"), "svamp"),
    ("#### 5", object(), "math500"), ("\\boxed{1+2}", "nonsense", "countdown"),
    ("\\boxed{1+2}", [[1, 2], None], "countdown"), ("\\boxed{1}", {"answer": 1}, "math500"),
])
def test_odd_inputs_give_booleans(text, gold, task):
    assert is_correct(text, gold, task) in (True, False)
    assert extract_answer(text, task) is None or isinstance(extract_answer(text, task), str)


def test_from_worker_threads():
    """math-verify's SIGALRM timeout only works on the main thread; ours must work anywhere."""
    jobs = [("\\boxed{\\sqrt{4}}", "2", "math500"), ("\\boxed{x^2-1}", "(x-1)(x+1)", "math500"),
            ("\\boxed{\\frac{1}{2}}", "0.5", "math500"), ("#### 18", "18.0", "gsm8k"),
            ("\\boxed{49+55-53}", [[49, 55, 53], 51], "countdown"), ("\\boxed{3}", "4", "math500")] * 4
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda j: is_correct(*j), jobs))
    assert got == [True, True, True, True, True, False] * 4
    result = []
    t = threading.Thread(target=lambda: result.append(equivalent(HOSTILE["latex power tower"], "1", "math500")))
    t.start()
    t.join(10)
    assert result == [False]


def _forked_check(q):  # runs in a daemonic forked child
    q.put((is_correct("\\boxed{\\sqrt{9}}", "3", "math500"), extract_answer("#### 7", "gsm8k")))


def test_from_daemonic_forked_process():
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    equivalent("\\sqrt{16}", "4", "math500")  # the parent's helper is running when we fork
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_forked_check, args=(q,), daemon=True)
    p.start()
    got = q.get(timeout=60)
    p.join(30)
    assert got == (True, "7")
    assert equivalent("\\sqrt{25}", "5", "math500")  # the parent's helper still answers


def test_from_a_subprocess():
    code = (
        "from lm_eval_temporal.answers import is_correct\n"
        "print(is_correct('\\\\boxed{\\\\text{(C)}}', 'C', 'math500'), is_correct('#### 5', 5.0, 'gsm8k'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr[-2000:]


def test_helper_that_hangs_is_killed_and_replaced(monkeypatch):
    """The hard bound: a helper stuck in uninterruptible work is killed after timeout + grace."""
    hung = "import sys\nsys.stdout.write('[\"ready\"]\\n'); sys.stdout.flush()\nimport time\ntime.sleep(600)\n"
    monkeypatch.setattr(V, "_BOOT", hung)
    monkeypatch.setattr(V, "_KILL_GRACE_S", 0.2)
    w = A._MathWorker()
    w.disabled = False
    t = time.perf_counter()
    assert w.equal("x+1", "1+x", 0.3) is None
    assert time.perf_counter() - t < 5
    assert w.timeouts == 1 and w._proc is None
    monkeypatch.undo()
    assert w.equal("x+1", "1+x", 5.0) is True  # a fresh helper on the next call
    w.close()


def test_helper_unavailable_falls_back_in_process(monkeypatch):
    monkeypatch.setattr(V, "_BOOT", "raise SystemExit(3)")
    w = A._MathWorker()
    w.disabled = False
    for _ in range(3):
        assert w.equal("a", "b", 1.0) is None
    assert w.disabled  # after three failed starts
    monkeypatch.setattr(V, "_WORKER", w)
    A._equivalent_cached.cache_clear()
    assert equivalent("\\sqrt{36}", "6", "math500")  # in-process math-verify
    A._equivalent_cached.cache_clear()


# Random concatenations of characters and the fragments the parsers look for.
LATEXISH = st.lists(
    st.sampled_from(list("0123456789+-*/^_=(){}[]$.,%!<>|\\ \n abcxyz")
                    + ["\\boxed{", "\\frac", "\\sqrt", "<answer>", "</answer>", "####", "\\text{",
                       "<|eot_id|>", "answer is", "\\left(", "\\right)", "\x00", "\u202e"]),
    max_size=60,
).map("".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=300), LATEXISH))
def test_property_extractors_never_crash(text):
    t = time.perf_counter()
    for task in A.TASKS:
        got = extract_answer(text, task)
        assert got is None or isinstance(got, str)
        if got is not None:
            assert equivalent(got, got, task)
    assert time.perf_counter() - t < BOUND_S


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=LATEXISH, b=LATEXISH)
def test_property_math_equivalence_never_crashes(a, b):
    t = time.perf_counter()
    r = equivalent(a, b, "math500")
    assert r in (True, False)
    assert equivalent(b, a, "math500") == r  # symmetric
    assert is_correct(a, b, "math500") in (True, False)
    assert time.perf_counter() - t < A.MATH_TIMEOUT_S + V._KILL_GRACE_S + 5
