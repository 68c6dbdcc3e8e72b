"""What a run leaves behind can be trusted: trajectory files hold one record per document even
across interrupts and reruns, a cache written under other settings is refused, schedules that
had to be rounded say so, and bad paths fail before any model loads."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import CachingLM
from lm_eval.models.dummy import DummyLM

from lm_eval_temporal import run_info, trace
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


def interrupted_run(tiny_dir, path):
    """A run with ``trajectory_path=path`` interrupted (KeyboardInterrupt) in its second batch,
    after the first batch's records were written."""
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, trajectory_path=str(path), overlap=False, **GEN)
    real, calls = lm.pipeline.finish, []

    def interrupt_in_second_batch(sampled):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(sampled)

    lm.pipeline.finish = interrupt_in_second_batch
    with pytest.raises(KeyboardInterrupt):
        lm.generate_until(reqs(), disable_tqdm=True)


def test_interrupted_then_resumed_run_has_one_record_per_document(tiny_dir, tmp_path):
    path = tmp_path / "traj.jsonl"
    interrupted_run(tiny_dir, path)
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


# A resumed run (through lm-eval's cache, as --use_cache does) that is hard-killed while its
# second batch is being decoded, after its first batch's records and answers were written.
KILLED_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from lm_eval.api.model import CachingLM
from lm_eval_temporal.backend import LLaDATemporalLM
from test_run_integrity import GEN, reqs

tiny, path, db, ready = sys.argv[1:]
lm = LLaDATemporalLM(pretrained=tiny, batch_size=4, trajectory_path=path, overlap=False, **GEN)
real, calls = lm.pipeline.finish, []

def wait_in_second_batch(sampled):
    calls.append(1)
    if len(calls) == 2:
        Path(ready).touch()
        time.sleep(600)
    return real(sampled)

lm.pipeline.finish = wait_in_second_batch
CachingLM(lm, db).generate_until(reqs())
"""


def run_and_kill(tiny_dir, path, db, tmp_path) -> None:
    """Run KILLED_RUN in a subprocess and SIGKILL it once its first batch is on disk."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    script = KILLED_RUN.format(tests=str(Path(__file__).parent))
    child = subprocess.Popen([sys.executable, "-c", script, str(tiny_dir), str(path), str(db), str(ready)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready.exists():
        if child.poll() is not None:
            pytest.fail(f"the run to kill ended by itself: {child.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            child.kill()
            pytest.fail("the run to kill never reached its second batch")
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    child.stderr.close()


def test_hard_killed_resume_keeps_the_records_of_earlier_runs(tiny_dir, tmp_path):
    path, db = tmp_path / "traj.jsonl", tmp_path / "cache.db"
    partial = path.with_name("traj.jsonl.partial")
    run_and_kill(tiny_dir, path, db, tmp_path)
    first = set(doc_ids(partial))
    assert len(first) == 4 and not path.exists()
    # Resumed (the cache sends the 8 documents not answered yet) and killed again mid-way.
    run_and_kill(tiny_dir, path, db, tmp_path)
    second = doc_ids(partial)
    assert first <= set(second), "a hard-killed resume lost the records of the run before it"
    assert len(second) == len(set(second)) == 8
    # A kill can also cut a line in the middle: the next run's records must still start their own.
    with partial.open("a") as f:
        f.write('{"v": 2, "answers": [["1"')
    third = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, trajectory_path=str(path), **GEN)
    CachingLM(third, str(db)).generate_until(reqs())
    assert doc_ids(path) == list(range(12))  # every document once, none lost
    assert not partial.exists()


def test_partial_left_under_other_settings_is_set_aside_not_merged(tiny_dir, tmp_path, caplog):
    path = tmp_path / "traj.jsonl"
    partial = path.with_name("traj.jsonl.partial")
    interrupted_run(tiny_dir, path)
    left = partial.read_text()
    other = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, trajectory_path=str(path), vote="linear", **GEN)
    with caplog.at_level(logging.WARNING):
        other.generate_until(reqs(2), disable_tqdm=True)
    records = [TemporalRecord.from_json(json.loads(x)) for x in path.read_text().splitlines()]
    assert sorted(r.doc_id for r in records) == [0, 1] and {r.method for r in records} == {"linear"}
    (aside,) = tmp_path.glob("traj.jsonl.partial.*.stale")
    assert aside.read_text() == left  # nothing lost: the old records are kept beside
    (warning,) = [r.message for r in caplog.records if "set aside" in r.message]
    assert str(partial) in warning and str(aside) in warning
    assert "other settings (vote='exp'; now vote='linear')" in warning
    # A partial with no settings header (which run left it is unknown) is not merged either.
    partial.write_text(path.read_text())
    again = LLaDATemporalLM(pretrained=str(tiny_dir), trajectory_path=str(path), trajectory_mode="overwrite",
                            vote="linear", **GEN)
    again.generate_until(reqs(1), disable_tqdm=True)
    assert doc_ids(path) == [0]
    assert (tmp_path / "traj.jsonl.partial.unknown.stale").exists()


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


def test_start_summary_shows_every_output_setting_as_it_acts():
    import re
    from dataclasses import fields

    from lm_eval_temporal import run_info
    from lm_eval_temporal.options import BackendOptions, parse_options

    opts = parse_options({"protocol": "paper", "cluster": "equivalence", "gen_length": "64", "prefix_cache": "true"})
    shown = dict(re.findall(r"(\w+)=(\S+)", run_info.summary(opts, opts.temporal, {})))
    # from the options class itself, so that a new option is covered without touching this test
    output_changing = {f.name for f in fields(BackendOptions)} - run_info.RESULT_NEUTRAL
    assert output_changing - set(shown) == set()
    assert shown["cluster"] == "exact"  # what the paper protocol clusters by, whatever cluster says
    assert (shown["protocol"], shown["prefix_cache"], shown["gen_length"], shown["steps"]) == ("paper", "true", "64",
                                                                                              "per-task")
    embedded = run_info.summary(opts, opts.temporal, {"steps": 32, "block_length": 8})
    assert "steps=32 block_length=8" in embedded


def test_cache_with_answers_but_no_settings_is_refused(tiny_dir, tmp_path):
    db = str(tmp_path / "cache.db")
    CachingLM(DummyLM(), db).generate_until(reqs(2))  # another backend's answers at the same path
    with pytest.raises(ValueError, match=r"--use_cache: this cache holds 2 answers but no llada_temporal settings"):
        CachingLM(LLaDATemporalLM(pretrained=str(tiny_dir), **GEN), db)
    old = {run_info.CACHE_KEY: {"fingerprint": "0" * 16, "settings": {}}}  # one stamp for all, no code or weights
    with pytest.raises(ValueError, match="written by an earlier llada_temporal"):
        run_info.check_cache(old, LLaDATemporalLM(pretrained=str(tiny_dir), **GEN).opts, CHECKPOINT)


def test_cache_of_a_retrained_checkpoint_at_the_same_path_is_refused(tmp_path):
    from tiny_models import build_tiny_llada

    model, db = build_tiny_llada(tmp_path / "model", seed=0), str(tmp_path / "cache.db")
    CachingLM(LLaDATemporalLM(pretrained=str(model), **GEN), db).generate_until(reqs(2))
    build_tiny_llada(model, seed=1)  # retrained in place
    with pytest.raises(ValueError, match=r"other weights \(weights_sha256='[0-9a-f]{64}'; now weights_sha256="
                                         r"'[0-9a-f]{64}'\): the checkpoint \(or adapter\) changed since"):
        CachingLM(LLaDATemporalLM(pretrained=str(model), **GEN), db)


def test_cache_written_by_other_code_is_refused(tiny_dir, tmp_path, monkeypatch):
    db = str(tmp_path / "cache.db")
    CachingLM(LLaDATemporalLM(pretrained=str(tiny_dir), **GEN), db).generate_until(reqs(2))
    monkeypatch.setattr(run_info, "code_digest", lambda: "0" * 64)  # as after a parser change, same version
    with pytest.raises(ValueError, match=r"other code \(code='[0-9a-f]{64}'; now code='0{64}'\): the package's code "
                                         r"that shapes outputs changed since"):
        CachingLM(LLaDATemporalLM(pretrained=str(tiny_dir), **GEN), db)


def test_code_digest_covers_the_code_that_shapes_outputs(tmp_path):
    package = Path(run_info.__file__).parent
    copy = tmp_path / "lm_eval_temporal"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    assert run_info.code_digest(copy) == run_info.code_digest(package)
    for neutral in ("plot/figures.py", "tcr/trainer.py", "cli.py", "run_info.py", "leaderboard.py", "leaderboard_html.py"):
        (copy / neutral).write_text((copy / neutral).read_text() + "\n# edited\n")
        assert run_info.code_digest.__wrapped__(copy) == run_info.code_digest(package), neutral
    for shaping in ("answers/paper.py", "sampler.py", "task_configs/svamp.yaml", "tiny/checkpoint/tokenizer.json"):
        before = run_info.code_digest.__wrapped__(copy)
        (copy / shaping).write_text((copy / shaping).read_text() + "\n")
        assert run_info.code_digest.__wrapped__(copy) != before, shaping


def test_settings_that_cannot_act_do_not_refuse_a_cache(tiny_dir, tmp_path, monkeypatch):
    db = str(tmp_path / "cache.db")
    first = LLaDATemporalLM(pretrained=str(tiny_dir), temperature=0, seed=1, early_stop="none", stop_window=4,
                            vote="exp", gate_window=3, mc_num=8, **GEN)
    out = CachingLM(first, db).generate_until(reqs(2))
    monkeypatch.chdir(tiny_dir.parent)  # the same folder, spelled another way
    second = LLaDATemporalLM(pretrained=f"./{tiny_dir.name}/", temperature=0, seed=2, early_stop="none",
                             stop_window=6, stop_gap=4, vote="exp", gate_window=5, gate_share=0.5, mc_num=16, **GEN)
    second.pipeline.sample = None  # replayed from the cache: nothing may be decoded
    assert CachingLM(second, db).generate_until(reqs(2)) == out
    # Once the cache holds loglikelihood answers, mc_num (and the seed) act on it.
    choice = [Instance("loglikelihood", {}, ("Q:1+2=", "3"), 0)]
    scorer = LLaDATemporalLM(pretrained=str(tiny_dir), temperature=0, seed=2, mc_num=16, **GEN)
    CachingLM(scorer, db).loglikelihood(choice)
    with pytest.raises(ValueError, match=r"the loglikelihood answers .* other settings \(mc_num=16; now mc_num=8\)"):
        CachingLM(LLaDATemporalLM(pretrained=str(tiny_dir), temperature=0, seed=2, mc_num=8, **GEN), db)


def test_weights_are_hashed_once_per_backend(tiny_dir, tmp_path, monkeypatch):
    calls = []
    real = run_info.weights_digest
    monkeypatch.setattr(run_info, "weights_digest", lambda folder: calls.append(folder) or real(folder))
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), **GEN)
    CachingLM(lm, str(tmp_path / "cache.db")).generate_until(reqs(1))
    first, second = lm.get_model_info(), lm.get_model_info()
    assert len(calls) == 1
    checkpoint = first["llada_temporal"]["checkpoint"]
    assert checkpoint == second["llada_temporal"]["checkpoint"]
    assert checkpoint["weights_sha256"] == real(tiny_dir) and checkpoint["loaded_from"] == str(tiny_dir)


def _opts(**kw):
    from lm_eval_temporal.options import parse_options

    return parse_options(kw)


CHECKPOINT = {"pretrained": "x", "revision": None, "weights_sha256": "a" * 64}


@pytest.mark.parametrize("written, now, requests, refused", [
    # seed acts when sampling is random: temperature unset (a task may ask for sampling) or > 0,
    # random remasking, and the Monte-Carlo masks of loglikelihood
    (dict(seed=1, temperature=0), dict(seed=2, temperature=0), ["generate_until"], None),
    (dict(seed=1), dict(seed=2), ["generate_until"], "seed=1"),
    (dict(seed=1, temperature=0.5), dict(seed=2, temperature=0.5), ["generate_until"], "seed=1"),
    (dict(seed=1, temperature=0, remasking="random"), dict(seed=2, temperature=0, remasking="random"),
     ["generate_until"], "seed=1"),
    (dict(seed=1, temperature=0), dict(seed=2, temperature=0), ["generate_until", "loglikelihood"], "seed=1"),
    # mc_num acts on loglikelihood answers only
    (dict(mc_num=8), dict(mc_num=16), ["generate_until"], None),
    (dict(mc_num=8), dict(mc_num=16), ["generate_until", "loglikelihood"], "mc_num=8"),
    # early-stop and gate settings act only when their policy is on
    (dict(stop_window=4, stop_gap=1, stop_min=0.1), dict(stop_window=5, stop_gap=2, stop_min=0.2), ["generate_until"],
     None),
    (dict(early_stop="stable", stop_window=4, stop_gap=1), dict(early_stop="stable", stop_window=5, stop_gap=2),
     ["generate_until"], "stop_window=4"),
    (dict(early_stop="confidence", stop_window=4, stop_gap=1), dict(early_stop="confidence", stop_window=5, stop_gap=2),
     ["generate_until"], "stop_gap=[1.0]"),
    (dict(early_stop="confidence", stop_min=0.1), dict(early_stop="confidence", stop_min=0.2), ["generate_until"],
     "stop_min=0.1"),
    (dict(vote="exp", gate_window=3), dict(vote="exp", gate_window=4), ["generate_until"], None),
    (dict(vote="gated", gate_window=3), dict(vote="gated", gate_window=4), ["generate_until"], "gate_window=3"),
    # hub ids are kept as given
    (dict(pretrained="GSAI-ML/LLaDA-8B-Instruct"), dict(pretrained="gsai-ml/LLaDA-8B-Instruct"), ["generate_until"],
     "pretrained="),
])
def test_cache_refuses_exactly_the_settings_that_act(written, now, requests, refused):
    db = {}
    run_info.check_cache(db, _opts(**written), CHECKPOINT)
    for request in requests:
        run_info.record_cache(db, _opts(**written), CHECKPOINT, request)
    if refused is None:
        run_info.check_cache(db, _opts(**now), CHECKPOINT)
        return
    with pytest.raises(ValueError, match=f"--use_cache: .*other settings \\(.*{re.escape(refused)}"):
        run_info.check_cache(db, _opts(**now), CHECKPOINT)
