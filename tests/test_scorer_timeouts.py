"""A math-verify check that runs out of time has no verdict: it is not cached, it is counted,
and the run reports it (issue 19, defect 3).

The timeouts are forced with a stand-in helper process that behaves like the real one at its
deadline: it answers ``null`` ("no verdict") when its budget is too small for the work.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from lm_eval_temporal import answers
from lm_eval_temporal.answers import verify as V

# Needs 0.5 s per comparison: with a smaller budget it stops itself at the deadline, as the real
# helper's interval timer does; "hang" blocks it beyond any timer (the kill path).
_SLOW_HELPER = (
    "import json, sys, time\n"
    "sys.stdout.write('[\"ready\"]\\n'); sys.stdout.flush()\n"
    "for line in sys.stdin:\n"
    "    rid, a, b, budget = json.loads(line)\n"
    "    if a == 'hang':\n"
    "        time.sleep(600)\n"
    "    time.sleep(min(budget, 0.5))\n"
    "    verdict = None if budget < 0.5 else a.replace(' ', '') == b.replace(' ', '')[::-1]\n"
    "    sys.stdout.write(json.dumps([rid, verdict]) + '\\n'); sys.stdout.flush()\n"
)
# Equal for the stand-in (one is the other reversed) but not by any cheap check.
A, B = "x+1", "1+x"


@pytest.fixture
def slow_pool(monkeypatch):
    monkeypatch.setattr(V, "_BOOT", _SLOW_HELPER)
    monkeypatch.setattr(V, "_KILL_GRACE_S", 0.2)
    pool = V._MathPool(1)
    monkeypatch.setattr(V, "_WORKER", pool)
    answers.clear_caches()
    yield pool
    pool.close()
    answers.clear_caches()


def test_a_timed_out_check_is_not_cached(slow_pool, monkeypatch):
    monkeypatch.setattr(V, "MATH_TIMEOUT_S", 0.1)
    before = answers.scorer_stats()
    assert answers.equivalent(A, B, "math500") is False  # no verdict: not equivalent for this call
    assert not answers.is_correct("\\boxed{" + A + "}", B, "math500")
    got = answers.scorer_stats(since=before)
    assert (got["calls"], got["unknown"], got["timeouts"], got["helper_timeouts"]) == (2, 2, 2, 2)
    assert answers.cache_info()["equivalent"].currsize == 0
    monkeypatch.setattr(V, "MATH_TIMEOUT_S", 5.0)  # time enough: the same pair gets its verdict
    assert answers.equivalent(A, B, "math500") is True
    assert answers.is_correct("\\boxed{" + A + "}", B, "math500")
    assert answers.scorer_stats(since=before)["unknown"] == 2


def test_a_vote_does_not_merge_answers_without_a_verdict(slow_pool, monkeypatch):
    from lm_eval_temporal.temporal import vote

    same = answers.equivalence("math500")
    monkeypatch.setattr(V, "MATH_TIMEOUT_S", 0.1)
    assert len(vote([A, B, B], weighting="fixed", equivalent=same).clusters) == 2
    monkeypatch.setattr(V, "MATH_TIMEOUT_S", 5.0)
    assert len(vote([A, B, B], weighting="fixed", equivalent=same).clusters) == 1


def test_every_kind_of_timeout_is_counted(slow_pool, monkeypatch):
    monkeypatch.setattr(V, "MATH_TIMEOUT_S", 1.0)
    before = answers.scorer_stats()
    assert V.math_verify_equal(A, B) is True
    # The helper is killed: it does not answer within the budget and the grace.
    assert V.math_verify_equal("hang", B) is None
    # The one helper is busy (a hung call in another thread): the wait for it times out.
    slow_pool.equal(A, B, 5.0)  # its replacement is up
    hung = threading.Thread(target=V.math_verify_equal, args=("hang", B))
    hung.start()
    time.sleep(0.2)
    monkeypatch.setattr(V, "MATH_TIMEOUT_S", 0.3)
    assert V.math_verify_equal(A, B) is None
    # The helper stops itself at the deadline.
    hung.join(20)
    slow_pool.equal(A, B, 5.0)
    assert V.math_verify_equal(A, B) is None
    got = answers.scorer_stats(since=before)
    assert got == {"calls": 5, "unknown": 4, "wait_timeouts": 1, "helper_timeouts": 1, "kills": 2, "timeouts": 4}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("tiny_llada"))


def test_the_run_reports_timeouts_once(slow_pool, monkeypatch, tiny_dir, caplog):
    from lm_eval_temporal.backend import LLaDATemporalLM

    lm = LLaDATemporalLM(pretrained=str(tiny_dir), gen_length=16, steps=8, block_length=8)
    with caplog.at_level(logging.WARNING):
        assert lm.get_model_info()["llada_temporal"]["scorer"]["timeouts"] == 0
        assert "math-verify" not in caplog.text
        monkeypatch.setattr(V, "MATH_TIMEOUT_S", 0.1)
        answers.equivalent(A, B, "math500")  # e.g. in a task's process_results, after generation
        scorer = lm.get_model_info()["llada_temporal"]["scorer"]
        assert (scorer["calls"], scorer["unknown"], scorer["timeouts"]) == (1, 1, 1)
        assert caplog.text.count("math-verify checks had no verdict") == 1
        lm.get_model_info()
        assert caplog.text.count("math-verify checks had no verdict") == 1  # once per run
