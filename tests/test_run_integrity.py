"""What a run leaves behind can be trusted: trajectory files hold one record per document even
across interrupts and reruns, a cache written under other settings is refused, schedules that
had to be rounded say so, and bad paths fail before any model loads."""

from __future__ import annotations

import json
import logging

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import CachingLM

from lm_eval_temporal import trace
from lm_eval_temporal.backend import LLaDATemporalLM
from lm_eval_temporal.record import TemporalRecord
from lm_eval_temporal.trajectory import HEADER

GEN = dict(gen_length=16, steps=8, block_length=8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("tiny_llada_integrity"))


def reqs(n: int = 12) -> list[Instance]:
    doc = {"gold": json.dumps("5"), trace.TRACE_KEY: {"task": "gsm8k"}}
    return [Instance("generate_until", doc, (f"Q:{i}+{i}=?", {"until": [], "max_gen_toks": 16}), i, ("arith_chain", i, 1))
            for i in range(n)]


def doc_ids(path) -> list[int]:
    """The documents of a trajectory file's records (a partial file's settings header is not one)."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return sorted(TemporalRecord.from_json(r).doc_id for r in rows if HEADER not in r)


def test_interrupted_then_resumed_run_has_one_record_per_document(tiny_dir, tmp_path):
    path = tmp_path / "traj.jsonl"
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, trajectory_path=str(path), overlap=False, **GEN)
    real, calls = lm.pipeline.finish, []

    def interrupt_after_first_batch(sampled):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(sampled)

    lm.pipeline.finish = interrupt_after_first_batch
    with pytest.raises(KeyboardInterrupt):
        lm.generate_until(reqs(), disable_tqdm=True)
    assert not path.exists()  # nothing that looks like a complete run
    done = set(doc_ids(path.with_name("traj.jsonl.partial")))
    assert len(done) == 4  # the finished batch is kept
    # Resume (as --use_cache would: the finished batch is cached, the rest is sent again).
    resumed = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, trajectory_path=str(path), **GEN)
    resumed.generate_until([r for r in reqs() if r.doc_id not in done], disable_tqdm=True)
    assert doc_ids(path) == list(range(12))
    assert not path.with_name("traj.jsonl.partial").exists()
    # A rerun that decodes documents again replaces their records instead of adding duplicates.
    again = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, trajectory_path=str(path),
                            trajectory_mode="overwrite", **GEN)
    again.generate_until(reqs(), disable_tqdm=True)
    assert doc_ids(path) == list(range(12))


def test_existing_trajectory_file_is_refused_unless_told(tiny_dir, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("{}\n")
    with pytest.raises(ValueError, match="trajectory_path=.*the file exists; pass trajectory_mode=overwrite"):
        LLaDATemporalLM(pretrained=str(tiny_dir), trajectory_path=str(path), **GEN)
    path.unlink()
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), trajectory_path=str(path), trajectory_mode="append", **GEN)
    lm.generate_until(reqs(2), disable_tqdm=True)
    lm.generate_until(reqs(3), disable_tqdm=True)  # a second call of the same object appends
    assert doc_ids(path) == [0, 0, 1, 1, 2]


def test_bad_trajectory_path_fails_before_loading(tmp_path):
    missing_model = str(tmp_path / "no-model")  # loading would fail with another message
    with pytest.raises(ValueError, match="trajectory_path=.*is a folder"):
        LLaDATemporalLM(pretrained=missing_model, trajectory_path=str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="trajectory_path=.*cannot create the folder"):
        LLaDATemporalLM(pretrained=missing_model, trajectory_path=str(blocker / "sub" / "t.jsonl"))


def test_cache_written_under_other_settings_is_refused(tiny_dir, tmp_path):
    db = str(tmp_path / "cache.db")
    first = LLaDATemporalLM(pretrained=str(tiny_dir), vote="exp", **GEN)
    cached = CachingLM(first, db)
    out = cached.generate_until(reqs(2))
    assert CachingLM(LLaDATemporalLM(pretrained=str(tiny_dir), vote="exp", batch_size=4, **GEN), db)\
        .generate_until(reqs(2)) == out  # same settings (batch size does not count): replayed
    with pytest.raises(ValueError, match=r"--use_cache: .*other settings \(vote='exp'; now vote='linear'\)"):
        CachingLM(LLaDATemporalLM(pretrained=str(tiny_dir), vote="linear", **GEN), db)


def test_rounded_schedule_is_said_and_recorded(caplog):
    lm = LLaDATemporalLM(steps=7)  # embedded model: gen_length 32 in 4 blocks of 8
    with caplog.at_level(logging.WARNING):
        cfg = lm.resolve_generation({})
        lm.resolve_generation({})
    assert cfg.steps == 8
    assert [r.message for r in caplog.records].count(
        "llada_temporal: schedule rounded: steps 7 -> 8 (a multiple of the 4 blocks, at most gen_length)") == 1
    (schedule,) = lm.get_model_info()["llada_temporal"]["schedules"]
    assert schedule["steps"] == 8 and schedule["rounded"] == ["steps 7 -> 8 (a multiple of the 4 blocks, at most gen_length)"]


def test_newcomer_warnings_once(tiny_dir, caplog):
    lm = LLaDATemporalLM()
    with caplog.at_level(logging.WARNING):
        lm.apply_chat_template([{"role": "user", "content": "Q:1+1=?"}])
        lm.apply_chat_template([{"role": "user", "content": "Q:1+2=?"}])
    assert sum("--apply_chat_template with the embedded model" in r.message for r in caplog.records) == 1
    caplog.clear()
    tiny = LLaDATemporalLM(pretrained=str(tiny_dir), gen_length=256, steps=8, block_length=256)
    long = [Instance("generate_until", {}, ("x" * 400, {"until": []}), i, ("t", i, 1)) for i in range(3)]
    with caplog.at_level(logging.WARNING):
        tiny.generate_until(long, disable_tqdm=True)
    truncation = [r.message for r in caplog.records if "truncated" in r.message]
    assert truncation == ["llada_temporal: 3 of 3 prompts were longer than max_sequence_length=512 minus "
                          "gen_length and were truncated from the left"]
