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
from lm_eval_temporal.answers import screen as S
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
    w = V._MathWorker()
    w.disabled = False
    before = A.scorer_stats()
    t = time.perf_counter()
    assert w.equal("x+1", "1+x", 0.3) is None
    assert time.perf_counter() - t < 5
    assert A.scorer_stats(since=before)["kills"] == 1 and w._proc is None
    monkeypatch.undo()
    assert w.equal("x+1", "1+x", 5.0) is True  # a fresh helper on the next call
    w.close()


def test_helper_unavailable_falls_back_in_process(monkeypatch):
    monkeypatch.setattr(V, "_BOOT", "raise SystemExit(3)")
    w = V._MathWorker()
    w.disabled = False
    for _ in range(3):
        assert w.equal("a", "b", 1.0) is None
    assert w.disabled  # after three failed starts
    monkeypatch.setattr(V, "_WORKER", w)
    A.clear_caches()
    assert equivalent("\\sqrt{36}", "6", "math500")  # in-process math-verify
    A.clear_caches()


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
    assert equivalent(b, a, "math500") is r  # symmetric
    is_correct(a, b, "math500")
    assert time.perf_counter() - t < A.MATH_TIMEOUT_S + V._KILL_GRACE_S + 5


def _latex_fraction(n: int, d: int, form: str) -> str:
    sign = "-" if n < 0 else ""
    return {"frac": f"{sign}\\frac{{{abs(n)}}}{{{d}}}", "dfrac": f"{sign}\\dfrac{{{abs(n)}}}{{{d}}}",
            "slash": f"{n}/{d}", "parens": f"({n})/({d})"}[form]


FRACTION_FORMS = st.sampled_from(["frac", "dfrac", "slash", "parens"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(-30, 30), d=st.integers(1, 12), m=st.integers(-30, 30), e=st.integers(1, 12),
       pred_form=FRACTION_FORMS, gold_form=FRACTION_FORMS)
def test_property_math_verdicts_are_the_values(n, d, m, e, pred_form, gold_form):
    """Random fractions in the forms MATH500 answers take: the verdict is exactly whether the
    values are equal, through the cheap checks ("frac", "dfrac", "slash") or math-verify
    ("parens")."""
    from fractions import Fraction

    pred, gold = _latex_fraction(n, d, pred_form), _latex_fraction(m, e, gold_form)
    want = Fraction(n, d) == Fraction(m, e)
    assert equivalent(pred, gold, "math500") is want, (pred, gold)
    assert is_correct("so the answer is $\\boxed{" + pred + "}$.", gold, "math500") is want, (pred, gold)


# ----------------------------------------------------------------------------- bounded scoring
# Inputs whose evaluation explodes in sympy (each took 7-7.5 s: the helper's old 5 s timeout, a
# 2 s kill and a restart), and the 3 s a call may take here: a generous bound on a measured
# call, well above the 1.75 s a call can take by design (MATH_TIMEOUT_S + _KILL_GRACE_S).
EXPLOSIVE = ["(10!)!", "100!!", "\\Gamma(10^{6})", "\\binom{10^{9}}{10^{8}}", "(10^{9})!",
             "\\Gamma\\left(10^{6}\\right)", "{10^9 \\choose 10^8}", "\\dbinom{10^{9}}{10^{8}}", "10^{6}!",
             "2^{100!}", "(10^9)!!", "1{,}000{,}000!", "(x+1)^{999}", "(2^{99})^{(2^{99})}"]
CALL_BOUND_S = 3.0


def test_default_bound_is_under_two_seconds():
    if "LM_EVAL_TEMPORAL_MATH_TIMEOUT" not in __import__("os").environ:
        assert A.MATH_TIMEOUT_S + V._KILL_GRACE_S < 2.0
    assert V.MATH_WORKERS >= 1


@pytest.mark.parametrize("form", EXPLOSIVE)
def test_explosive_forms_are_screened(form):
    assert not S.verifiable(form)
    t = time.perf_counter()
    assert is_correct("\\boxed{" + form + "}", "5", "math500") is False
    assert equivalent(form, "7", "math500") is False
    assert time.perf_counter() - t < CALL_BOUND_S, form


@pytest.mark.parametrize("text, gold", [
    ("\\boxed{5!}", "120"), ("\\boxed{\\binom{5}{2}}", "10"), ("\\boxed{2^{10}}", "1024"),
    ("\\boxed{\\frac{999!}{998!}}", "999"), ("\\boxed{(n+1)!}", "(n+1) n!"), ("\\boxed{\\Gamma(5)}", "24"),
    ("\\boxed{{5 \\choose 2}}", "10"), ("\\boxed{3!\\cdot 2!}", "12"),
])
def test_small_factorials_binomials_powers_still_verify(text, gold):
    assert S.verifiable(text[7:-1]) and S.verifiable(gold)
    assert is_correct(text, gold, "math500")


@pytest.mark.parametrize("form", [
    "5!", "999!", "\\binom{n}{2}", "\\binom{2n}{n}", "\\Gamma(\\frac{1}{2})", "\\frac{1}{(n+1)!}", "x \\neq 3",
    "a != b", "10,\\!000", "(x+1)^{99}", "2^{100}", "\\sqrt{2}^{100}", "(-x)^{100}", "\\sum_{k=1}^{100} k",
    "\\left( \\frac{3}{2}, -13 \\right)", "\\begin{pmatrix} 16/49 \\\\ 48/49 \\end{pmatrix}",
])
def test_screen_lets_ordinary_answers_through(form):
    assert S.verifiable(form)


def test_slow_input_past_the_screen_is_cut_off():
    """A form the screen does not know (Faulhaber's sum of 999th powers runs for minutes) is
    stopped by the per-call deadline."""
    t = time.perf_counter()
    assert equivalent("\\sum_{k=1}^{n} k^{999}", "5", "math500") is False
    assert time.perf_counter() - t < CALL_BOUND_S
    assert equivalent("\\sqrt{49}", "7", "math500")  # the helper still answers


@pytest.mark.parametrize("hostile", [
    lambda i: "\\boxed{" + EXPLOSIVE[i % len(EXPLOSIVE)].replace("10", str(11 + i)) + "}",  # screened
    lambda i: "\\boxed{\\sum_{k=1}^{n} k^{%d}}" % (990 - i),  # not screened: cut off by the deadline
], ids=["screened", "deadline"])
def test_eight_threads_do_not_queue_behind_slow_calls(hostile):
    equivalent("\\sqrt{4}", "2", "math500")  # the helper is running

    def job(i):
        t = time.perf_counter()
        bad = is_correct(hostile(i), "5", "math500")
        good = is_correct("\\boxed{\\sqrt{%d}}" % ((i + 20) ** 2), str(i + 20), "math500")
        return bad, good, time.perf_counter() - t

    t = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(job, range(8)))
    assert [g[:2] for g in got] == [(False, True)] * 8
    # Serially behind one helper the deadline case took 8 x (5 + 2) s before; generous bound.
    assert time.perf_counter() - t < 4 * CALL_BOUND_S, [round(g[2], 2) for g in got]


# A stand-in helper: answers at once, except that "hang" blocks it beyond any timer.
_FAKE_HELPER = (
    "import json, sys, time\n"
    "sys.stdout.write('[\"ready\"]\\n'); sys.stdout.flush()\n"
    "for line in sys.stdin:\n"
    "    rid, a, b, t = json.loads(line)\n"
    "    if a == 'hang':\n"
    "        time.sleep(600)\n"
    "    sys.stdout.write(json.dumps([rid, a == b]) + '\\n'); sys.stdout.flush()\n"
)


def test_pool_serves_others_while_one_helper_hangs(monkeypatch):
    monkeypatch.setattr(V, "_BOOT", _FAKE_HELPER)
    monkeypatch.setattr(V, "_KILL_GRACE_S", 0.5)
    p = V._MathPool(2)
    before = A.scorer_stats()
    try:
        assert p.equal("a", "a", 5.0) is True
        for _ in range(100):  # the spare helper starts in the background
            if sum(w.running for w in p._workers) == 2:
                break
            time.sleep(0.1)
        slow = []
        th = threading.Thread(target=lambda: slow.append((p.equal("hang", "x", 3.0), time.perf_counter())))
        t0 = time.perf_counter()
        th.start()
        time.sleep(0.2)
        assert p.equal("b", "b", 3.0) is True
        assert p.equal("b", "c", 3.0) is False
        assert time.perf_counter() - t0 < 2.0  # not behind the hung call (3.5 s until its kill)
        th.join(20)
        assert slow and slow[0][0] is None and slow[0][1] - t0 < 3.0 + 0.5 + CALL_BOUND_S
        assert A.scorer_stats(since=before)["kills"] == 1
        for _ in range(100):  # the killed helper is replaced in the background
            if sum(w.running for w in p._workers) == 2:
                break
            time.sleep(0.1)
        assert sum(w.running for w in p._workers) == 2
        assert p.equal("d", "d", 3.0) is True
    finally:
        p.close()


def test_pool_call_waits_no_longer_than_its_deadline(monkeypatch):
    """All helpers busy: a call gives up at its own deadline instead of queueing."""
    monkeypatch.setattr(V, "_BOOT", _FAKE_HELPER)
    p = V._MathPool(1)
    try:
        assert p.equal("a", "a", 5.0) is True
        th = threading.Thread(target=p.equal, args=("hang", "x", 2.0))
        th.start()
        time.sleep(0.2)
        before = A.scorer_stats()
        t = time.perf_counter()
        assert p.equal("b", "b", 0.5) is None
        assert time.perf_counter() - t < CALL_BOUND_S
        assert A.scorer_stats(since=before)["wait_timeouts"] == 1
        th.join(20)
    finally:
        p.close()


def test_helpers_exit_with_their_process():
    code = (
        "from lm_eval_temporal.answers import equivalent, verify as V\n"
        "import time\n"
        "assert equivalent('\\\\sqrt{4}', '2', 'math500')\n"
        "for _ in range(100):\n"
        "    if sum(w.running for w in V._WORKER._workers) == 2: break\n"
        "    time.sleep(0.1)\n"
        "print(*[w._proc.pid for w in V._WORKER._workers if w.running])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    pids = [int(x) for x in out.stdout.split()]
    assert len(pids) == 2, out.stderr[-2000:]
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
                   for pid in pids)


def test_in_process_path_still_works():
    code = (
        "import time\n"
        "from lm_eval_temporal.answers import is_correct, verify as V\n"
        "t = time.perf_counter()\n"
        "print(is_correct('\\\\boxed{5!}', '120', 'math500'), is_correct('\\\\boxed{(10!)!}', '5', 'math500'),\n"
        "      is_correct('\\\\boxed{\\\\binom{10^{9}}{10^{8}}}', '5', 'math500'), V._WORKER.disabled,\n"
        "      all(w._proc is None for w in V._WORKER._workers))\n"
    )
    env = {**__import__("os").environ, "LM_EVAL_TEMPORAL_MATH_WORKER": "0"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.split() == ["True", "False", "False", "True", "True"], out.stderr[-2000:]


def test_first_call_budget_starts_when_a_helper_is_up(monkeypatch):
    """Start-up (slow under load) is not contention: it must not eat the comparison's budget."""
    monkeypatch.setattr(V, "_BOOT", "import time\ntime.sleep(1.5)\n" + _FAKE_HELPER)
    p = V._MathPool(2)
    try:
        assert p.equal("a", "a", 1.0) is True
    finally:
        p.close()


def test_pool_that_cannot_start_helpers_falls_back_in_process(monkeypatch):
    monkeypatch.setattr(V, "_BOOT", "raise SystemExit(3)")
    p = V._MathPool(3)
    t = time.perf_counter()
    assert p.equal("a", "b", 1.0) is None
    assert p.disabled and time.perf_counter() - t < 60
    monkeypatch.setattr(V, "_WORKER", p)
    A.clear_caches()
    assert equivalent("\\sqrt{64}", "8", "math500")  # in-process math-verify
    assert not equivalent("(10!)!", "5", "math500")  # behind the screen
    A.clear_caches()
