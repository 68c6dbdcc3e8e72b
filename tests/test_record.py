"""The one per-sample schema (TemporalRecord), the one scoring function (metrics.score), the
record made from per-step answers (pipeline.make_record), and the torch-free core."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from lm_eval_temporal import metrics, trace
from lm_eval_temporal.config import TemporalConfig
from lm_eval_temporal.record import SCHEMA_VERSION, RecordError, TemporalRecord, expand_runs, run_length


def _record(**kw) -> TemporalRecord:
    base = dict(answer_task="gsm8k", steps=6, answers=[None, "5", "7", "7", "5", "5"], final="5", vote="5",
                vote_step=5, method="fixed", tse=0.4)
    return TemporalRecord(**{**base, **kw})


def test_run_length_round_trip():
    answers = ["1", "1", None, None, "2", "1"]
    runs = run_length(answers)
    assert runs == [["1", 2], [None, 2], ["2", 1], ["1", 1]]
    assert expand_runs(runs) == answers
    assert expand_runs(answers) == answers  # version 1 trajectory lines stored a plain list


def test_trace_and_trajectory_lines_share_one_answer_encoding_and_read_back():
    r = _record(task="arith_chain", doc_id=3, gold="5", weights=[1.0] * 6, final_text="#### 5", response="#### 5",
                step_texts=["", "#### 5", "#### 7", "#### 7", "#### 5", "#### 5"])
    compact, full = r.to_trace(), r.to_json()
    assert compact["v"] == full["v"] == SCHEMA_VERSION
    assert compact["answers"] == full["answers"] == [[None, 1], ["5", 1], ["7", 2], ["5", 2]]
    assert set(compact) < set(full) and "gold" not in compact and full["gold"] == "5"
    assert TemporalRecord.from_json(json.loads(json.dumps(full))) == r
    back = TemporalRecord.from_json(compact)
    assert (back.answers, back.vote, back.tse, back.gold, back.steps_run) == (r.answers, "5", 0.4, None, 6)
    assert "gate_share" not in full  # never-set optional fields are left out


def test_early_stopped_record_keeps_schedule_length():
    r = _record(steps=32)
    assert r.steps_run == 6 and TemporalRecord.from_json(r.to_trace()).steps == 32


def test_horizon_steps_run_and_schedule_steps_round_trip():
    """steps (the horizon T of vote and TSE), steps_run (forward passes) and schedule_steps (the
    exact schedule's steps) survive both serialisations; schedule_steps is written only where it
    is not steps, and a record written before it existed reads with schedule_steps = steps."""
    for kw, fields in [(dict(steps=16, answers=["7", "5"]), (16, 2, 16)),  # early stop: 2 of 16 steps
                       (dict(steps=2, answers=["7", "5"], schedule_steps=8), (2, 2, 8)),  # parallel: 2 of 8
                       (dict(steps=12, answers=["5"] * 12, schedule_steps=8), (12, 12, 8))]:  # parallel, 12 > 8
        r = _record(vote_step=1, **kw)
        for line in (r.to_trace(), r.to_json()):
            assert (line["steps"], line["steps_run"]) == fields[:2]
            assert line.get("schedule_steps", line["steps"]) == fields[2]
            assert ("schedule_steps" in line) == (fields[0] != fields[2])
            back = TemporalRecord.from_json(json.loads(json.dumps(line)))
            assert (back.steps, back.steps_run, back.schedule_steps) == fields
            assert back.steps_saved == 1 - fields[1] / fields[2]
    assert _record(steps=12, answers=["5"] * 12, schedule_steps=8).steps_saved == -0.5  # not clamped
    old = {"v": 2, "answer_task": "gsm8k", "steps": 8, "steps_run": 2, "answers": [["5", 2]], "final": "5",
           "vote": "5", "vote_step": 1, "method": "exp", "tse": 0.0}
    assert TemporalRecord.from_json(old).schedule_steps == 8
    with pytest.raises(RecordError, match=r"'steps_run'=3 but 'answers' holds 2 steps"):
        TemporalRecord.from_json({**old, "steps_run": 3})
    for bad in (0, "8", True):
        with pytest.raises(RecordError, match=rf"'schedule_steps'={bad!r} must be a positive integer"):
            TemporalRecord.from_json({**old, "schedule_steps": bad})


def test_version_1_lines_still_read():
    v1 = {"v": 1, "answer_task": "gsm8k", "steps": 3, "answers": ["1", None, "2"], "final": "2", "vote": "2",
          "vote_step": 2, "method": "exp", "tse": 0.0, "steps_run": 3, "task": "arith_chain", "doc_id": 0}
    r = TemporalRecord.from_json(v1)
    assert r.answers == ["1", None, "2"] and r.task == "arith_chain"


@pytest.mark.parametrize(
    "data, match",
    [
        ([1, 2], "expected a JSON object"),
        ({"final": "3"}, "no per-step 'answers'"),
        ({"answers": []}, "no steps"),
        ({"answers": [["1", 0]]}, "run-length pairs"),
        ({"answers": ["1"], "steps": 0}, "'steps'=0"),
        ({"answers": ["1"], "v": 99}, "version 99"),
    ],
)
def test_bad_records_say_what_is_wrong(data, match):
    with pytest.raises(RecordError, match=match):
        TemporalRecord.from_json(data, "f.jsonl:4")


def test_trace_round_trip_keeps_text_exactly():
    text = "The answer is 18.\n#### 18 <|temporal_trace|> in text is fine"
    r = _record()
    out = trace.attach(text, r)
    got_text, got = trace.split(out)
    assert got_text == text and got.answers == r.answers and got.tse == r.tse
    assert trace.split("#### 4") == ("#### 4", None)
    bad = "x" + trace.MARKER + "{not json"
    assert trace.split(bad) == (bad, None)


def test_doc_marker_is_the_only_reader_of_our_document_layout():
    doc = {"gold": json.dumps("7"), trace.TRACE_KEY: {"task": "gsm8k"}}
    assert trace.doc_marker(doc) == ("gsm8k", "7")
    assert trace.doc_marker({"question": "q"}) is None and trace.doc_marker(None) is None


def test_score_by_hand():
    r = _record()
    s = metrics.score(r, "5", check=lambda a: a == "5")
    assert (s.final_pass, s.vote_pass, s.ever_pass, s.first_gold_step, s.tse) == (True, True, True, 1, 0.4)
    assert s.step_pass(r) == [False, True, False, False, True, True]
    s7 = metrics.score(r, "7", check=lambda a: a == "7")
    assert (s7.final_pass, s7.vote_pass, s7.ever_pass, s7.first_gold_step) == (False, False, True, 2)
    calls = []
    metrics.score(_record(answers=["1"] * 50 + ["2"] * 50, final="2", vote="2"), "2",
                  check=lambda a: calls.append(a) or a == "2")
    assert sorted(calls) == ["1", "2"]  # once per distinct answer
    # Without a vote, vote_pass is the final answer's verdict; with real answer checking.
    plain = _record(method="none", vote=None, answers=["18", "18.0"], final="18.0", steps=2)
    assert metrics.score(plain, "18").vote_pass is True
    assert metrics.score(plain, "19").ever_pass is False


def test_make_record_votes_over_the_schedule_and_measures_tse():
    from lm_eval_temporal.pipeline import make_record

    answers = [None, "5", "7", "7", "5", "5"]
    texts = ["", "#### 5", "#### 7", "#### 7", "#### 5", "#### 5.0"]
    r = make_record(answers, texts, TemporalConfig(vote="fixed"), task="gsm8k", steps=6)
    assert (r.final, r.vote, r.vote_step, r.response, r.method) == ("5", "5", 5, "#### 5.0", "fixed")
    assert r.weights == [1.0] * 6 and r.step_texts is None and r.gate_kept_final is None
    w = [math.exp(12.8 * k / 6) for k in (3, 4, 5)]
    p = w[0] / sum(w)
    assert r.tse == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)))
    # Early stop: 4 of 8 steps run; steps never run cast no vote and the weights cover the steps run.
    short = make_record(["7", "7", "7", "5"], ["#### 7"] * 3 + ["#### 5"], TemporalConfig(vote="linear"),
                        task="gsm8k", steps=8, keep_texts=True)
    assert short.weights == [1 / 8, 2 / 8, 3 / 8, 4 / 8] and short.vote == "7" and short.step_texts[-1] == "#### 5"
    none = make_record([None] * 4, ["a", "b", "c", "d"], TemporalConfig(vote="none"), task="gsm8k", steps=4)
    assert (none.vote, none.vote_step, none.response, none.tse) == (None, 3, "d", 1.0)  # nothing parses: log2(2 kept)
    gated = make_record(["7", "5", "5"], ["7", "5", "5"], TemporalConfig(vote="gated", gate_window=2), task="gsm8k",
                        steps=3)
    assert gated.gate_kept_final is True and gated.vote == "5"
    with pytest.raises(ValueError, match="make_record: 4 steps run on a horizon of steps=3"):
        make_record(["7"] * 4, ["7"] * 4, TemporalConfig(), task="gsm8k", steps=3)
    assert (r.schedule_steps, short.schedule_steps) == (6, 8)  # default: the horizon
    own = make_record(["7", "5"], ["7", "5"], TemporalConfig(), task="gsm8k", steps=2, schedule_steps=8)
    assert (own.steps, own.steps_run, own.schedule_steps, own.steps_saved) == (2, 2, 8, 0.75)


def test_make_record_tse_holds_the_final_answer_after_a_row_ended():
    """One horizon T for vote and TSE: a row early stop ended at step n < T shows its final
    output at every later step (nothing is left masked), so TSE reads the final answer there."""
    from lm_eval_temporal.pipeline import make_record

    steps, texts = ["5", "5", "7", "5"], ["#### 5", "#### 5", "#### 7", "#### 5"]
    ended = make_record(steps, texts, TemporalConfig(), task="gsm8k", steps=16)
    assert ended.tse == 0.0 and ended.steps == 16 and ended.steps_run == 4  # window: steps 8-15, all "5"
    nothing = make_record(["7", None], ["#### 7", ""], TemporalConfig(), task="gsm8k", steps=8)
    assert nothing.tse == 2.0  # steps 4-7 hold the final "nothing parsed": the maximum, log2(4)
    # The same steps on a horizon they fill: TSE over their own later half ("7", "5").
    assert make_record(steps, texts, TemporalConfig(), task="gsm8k", steps=4).tse > 0.1


def test_make_record_passes_the_tie_rule_to_the_gated_vote():
    """The paper's tie rule (the answer seen first) holds for the gated vote's fallback too."""
    from lm_eval_temporal.pipeline import make_record

    # alpha 0: equal weights; the final step parses nothing, so the gate falls back to the vote.
    kw = dict(task="gsm8k", steps=3)
    default = make_record(["7", "5", None], ["7", "5", ""], TemporalConfig(vote="gated", alpha=0.0), **kw)
    paper = make_record(["7.0", "5.0", None], ["7", "5", ""], TemporalConfig(vote="gated", alpha=0.0, protocol="paper"),
                        **kw)
    assert (default.gate_kept_final, default.vote) == (False, "5")  # tie: the later cluster
    assert (paper.gate_kept_final, paper.vote) == (False, "7.0")  # tie: the cluster seen first


def test_torch_free_core():
    """Answers, voting, records, metrics and configs load without torch or lm_eval."""
    code = ("import sys; import lm_eval_temporal.answers, lm_eval_temporal.temporal, lm_eval_temporal.record, "
            "lm_eval_temporal.metrics, lm_eval_temporal.config, lm_eval_temporal.trace, lm_eval_temporal.options; "
            "bad = sorted(m for m in ('torch', 'lm_eval') if m in sys.modules); print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
