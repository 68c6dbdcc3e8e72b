"""``lm-eval-temporal revote``: re-voting recorded per-step answers equals a live run."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance

from lm_eval_temporal import answers
from lm_eval_temporal.backend import LLaDATemporalLM
from lm_eval_temporal.cli import main
from lm_eval_temporal.record import TemporalRecord
from lm_eval_temporal.recorded import Recorded, read_inputs
from lm_eval_temporal.revote import RevoteError, parse_settings, parse_sweep, revote, step_answers
from lm_eval_temporal.tasks import load_arith_chain, process_results, tokens_per_forward

# arith_chain documents on which the embedded model's exp vote (alpha=2) or fixed vote picks
# another answer than its final one (some right, some wrong), and four on which it does not.
DOC_IDS = [229, 273, 78, 23, 172, 73, 0, 1, 2, 3]
EXP = dict(vote="exp", alpha=2.0)
METRICS = ("exact_match", "final_pass", "ever_pass", "tse", "steps_saved", "nfe", "tpf")


@pytest.fixture(scope="module")
def docs():
    data = load_arith_chain()["test"]
    return {i: data[i] for i in DOC_IDS}


def live_run(docs, path: Path, **temporal) -> tuple[list[TemporalRecord], dict[str, float]]:
    """Decode ``docs`` through the backend (embedded model, arith_chain's generation settings),
    writing step texts to ``path``; returns its trajectory records and the task metrics, as
    lm-eval aggregates ``process_results``."""
    lm = LLaDATemporalLM(trajectory_path=str(path), trajectory_text=True, batch_size=len(docs), **temporal)
    gen = {"until": [], "max_gen_toks": 32, "do_sample": False, "temperature": 0.0}
    reqs = [Instance("generate_until", d, (d["prompt"], gen), i, ("arith_chain", i, 1)) for i, d in docs.items()]
    responses = lm.generate_until(reqs, disable_tqdm=True)
    per_doc = [process_results(d, [r]) for d, r in zip(docs.values(), responses)]
    agg = {m: sum(x[m] for x in per_doc) / len(per_doc) for m in METRICS if m != "tpf"}
    agg["tpf"] = tokens_per_forward([x["tpf"] for x in per_doc])
    records = [TemporalRecord.from_json(json.loads(line)) for line in path.read_text().splitlines()]
    return records, agg


@pytest.fixture(scope="module")
def runs(docs, tmp_path_factory):
    d = tmp_path_factory.mktemp("revote_live")
    return {"none": live_run(docs, d / "none.jsonl", vote="none"), "exp": live_run(docs, d / "exp.jsonl", **EXP),
            "fixed": live_run(docs, d / "fixed.jsonl", vote="fixed"), "dir": d}


@pytest.mark.parametrize("name,settings", [("exp", {"vote": "exp", "alpha": "2"}), ("fixed", {"vote": "fixed"})])
def test_revote_of_a_none_run_equals_a_live_run(runs, name, settings):
    live, live_metrics = runs[name]
    report = revote([runs["dir"] / "none.jsonl"], parse_settings(settings))
    # not a trivial check: the live vote returned another answer than the final one somewhere
    assert any(r.vote != r.final for r in live)
    by_doc = {r.doc_id: r for r in report.records}
    for r in live:
        assert by_doc[r.doc_id].to_json() == r.to_json()  # vote, vote_step, tse, weights, response, ...
    (row,) = report.rows
    assert row.task == "arith_chain" and row.n == len(DOC_IDS)
    for m in METRICS:
        assert row.metrics[m] == live_metrics[m], m
    assert row.metrics["vote_gain"] == live_metrics["exact_match"] - live_metrics["final_pass"]


def test_revote_back_to_none_and_to_another_alpha(runs):
    none, none_metrics = runs["none"]
    report = revote([runs["dir"] / "exp.jsonl"], parse_settings({"vote": "none"}))
    assert [r.to_json() for r in report.records] == [r.to_json() for r in none]
    assert report.rows[0].metrics["exact_match"] == none_metrics["exact_match"]
    assert report.rows[0].metrics["vote_gain"] == 0.0


def test_sweep_gives_one_row_per_value_each_equal_to_its_own_revote(runs):
    path = runs["dir"] / "none.jsonl"
    settings = parse_settings({"vote": "exp"})
    report = revote([path], settings, parse_sweep("alpha=0,1,2,5,10", settings))
    assert [r.settings["alpha"] for r in report.rows] == [0.0, 1.0, 2.0, 5.0, 10.0]
    assert report.records is None
    for row in report.rows:
        (alone,) = revote([path], {**settings, "alpha": row.settings["alpha"]}).rows
        assert row == alone
    assert report.rows[2].metrics == {**runs["exp"][1], "vote_gain": report.rows[2].metrics["vote_gain"]}
    with pytest.raises(RevoteError, match="alpha weights the exp and gated votes only"):
        parse_sweep("alpha=0,1", parse_settings({"vote": "fixed"}))
    with pytest.raises(RevoteError, match="expected KEY=V1,V2"):
        parse_sweep("early_stop=none", settings)
    with pytest.raises(RevoteError, match="alpha='-1'"):
        parse_sweep("alpha=1,-1", settings)


def test_cli_prints_a_table_writes_json_and_records(runs, tmp_path, capsys):
    out, js = tmp_path / "revoted.jsonl", tmp_path / "report.json"
    assert main(["revote", str(runs["dir"] / "none.jsonl"), "--vote", "exp", "--alpha", "2", "-o", str(out),
                 "--json", str(js)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].startswith("| task | vote | alpha | cluster | protocol | n | exact_match")
    assert "| arith_chain | exp | 2 | equivalence | default | 10 |" in table
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == [r.to_json() for r in runs["exp"][0]]
    doc = json.loads(js.read_text())
    assert doc["schema"] == "lm-eval-temporal/revote" and doc["version"] == 1
    assert doc["rows"][0]["exact_match"] == runs["exp"][1]["exact_match"]
    assert doc["files"][0]["kind"] == "trajectory"
    # --json alone: the JSON on stdout instead of the table
    assert main(["revote", str(runs["dir"] / "none.jsonl"), "--vote", "exp", "--alpha", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == doc


def test_protocol_rereads_step_texts_with_the_live_parser(runs):
    path = runs["dir"] / "none.jsonl"
    report = revote([path], parse_settings({"vote": "exp", "protocol": "paper"}))
    samples, _ = read_inputs([path])
    for s, new in zip(samples, report.records):
        assert new.protocol == "paper"
        assert new.answers == [answers.extract_answer(t, "gsm8k", "paper") for t in s.record.step_texts]
    assert report.rows[0].settings["protocol"] == "paper"
    assert any("re-read from their step texts" in n for n in report.notes)
    # re-reading under the recorded protocol gives back the recorded answers exactly
    for s in samples:
        flipped = Recorded(dataclasses.replace(s.record, protocol="paper"), s.scorer, s.where)
        assert step_answers(flipped, "default") == s.record.answers


def test_partial_file_header_duplicates_and_cut_line(runs, tmp_path):
    lines = (runs["dir"] / "none.jsonl").read_text().splitlines()
    partial = tmp_path / "traj.jsonl.partial"
    header = json.dumps({"llada_temporal_partial": {"fingerprint": "x", "settings": {}}})
    old = json.loads(lines[0])
    old["answers"] = [["999", old["steps"]]]  # an older decoding of the same document
    partial.write_text("\n".join([header, json.dumps(old), *lines, lines[1][:40]]))
    report = revote([partial], parse_settings({"vote": "none"}))
    assert [r.to_json() for r in report.records] == [r.to_json() for r in runs["none"][0]]
    skipped = report.sources[0].skipped
    assert len(skipped) == 3 and "settings header" in skipped[0] and "replaced by the newer line" in skipped[1]
    assert "cut by an interrupted run" in skipped[2]


def test_errors_name_the_file_and_what_is_wrong(runs, tmp_path, capsys):
    path = runs["dir"] / "none.jsonl"
    with pytest.raises(RevoteError, match="no such file"):
        revote([tmp_path / "missing.jsonl"], {"vote": "exp"})
    bad = tmp_path / "results.json"
    bad.write_text('{\n "results": {}\n}\n')
    with pytest.raises(RevoteError, match=r"results.json:1: not valid JSON"):
        revote([bad], {"vote": "exp"})
    other = tmp_path / "other.jsonl"
    other.write_text('{"foo": 1}\n')
    with pytest.raises(RevoteError, match="neither a trajectory record"):
        revote([other], {"vote": "exp"})
    nogold = tmp_path / "nogold.jsonl"
    rec = json.loads(path.read_text().splitlines()[0])
    del rec["gold"]
    nogold.write_text(json.dumps(rec) + "\n")
    with pytest.raises(RevoteError, match="nogold.jsonl:1: no gold answer"):
        revote([nogold], {"vote": "exp"})
    notexts = tmp_path / "notexts.jsonl"
    del rec["step_texts"]
    rec["gold"] = "1"
    notexts.write_text(json.dumps(rec) + "\n")
    with pytest.raises(RevoteError, match="--protocol paper re-reads every step's text.*trajectory_text=true"):
        revote([notexts], {"vote": "exp", "protocol": "paper"})
    with pytest.raises(RevoteError, match="is also at"):
        revote([path, notexts], {"vote": "exp"})
    with pytest.raises(RevoteError, match="alpha='x'"):
        parse_settings({"vote": "exp", "alpha": "x"})
    with pytest.raises(RevoteError, match="cannot change early_stop"):
        parse_settings({"vote": "exp", "early_stop": "stable"})
    assert main(["revote", str(path), "--vote", "exp", "--sweep", "alpha=1,2", "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "not with --sweep" in capsys.readouterr().err
    before = path.read_bytes()
    assert main(["revote", "--json", str(path), str(nogold), "--vote", "exp"]) == 2  # --json took the run's file
    assert "expected a .json file name" in capsys.readouterr().err and path.read_bytes() == before
    assert main(["revote", str(path), "--vote", "exp", "-o", str(path)]) == 2
    assert "is an input; the output would overwrite it" in capsys.readouterr().err and path.read_bytes() == before
    assert main(["revote", str(tmp_path / "missing.jsonl"), "--vote", "exp"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lm-eval-temporal revote: error: ") and "missing.jsonl: no such file" in err


@pytest.mark.slow
def test_revote_of_an_lm_eval_samples_file(tmp_path):
    """A real ``lm_eval --log_samples`` run: re-voted with its own settings, its samples file gives
    back every metric lm-eval reported; re-voted with exp, the same numbers as its trajectory
    file; and --protocol needs step texts, which a samples file never holds."""
    lm_eval = os.path.join(os.path.dirname(sys.executable), "lm_eval")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    traj = tmp_path / "traj.jsonl"
    r = subprocess.run([lm_eval, "--model", "llada_temporal", "--model_args", f"vote=none,trajectory_path={traj}",
                        "--tasks", "arith_chain", "--limit", "6", "--batch_size", "6", "--log_samples",
                        "--output_path", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (samples,) = glob.glob(str(tmp_path / "out" / "**" / "samples_arith_chain_*.jsonl"), recursive=True)
    (results,) = glob.glob(str(tmp_path / "out" / "**" / "results_*.json"), recursive=True)
    reported = json.loads(Path(results).read_text())["results"]["arith_chain"]

    same = revote([tmp_path / "out"], parse_settings({"vote": "none"}))  # a folder: its samples files
    assert same.sources[0].kind == "samples" and same.sources[0].path == samples
    (row,) = same.rows
    assert row.task == "arith_chain" and row.n == 6
    for m in METRICS:
        assert row.metrics[m] == reported[f"{m},none"], m
    logged = {json.loads(line)["doc_id"]: json.loads(line) for line in Path(samples).read_text().splitlines()}
    report = revote([samples], parse_settings({"vote": "none"}))
    samples_read, _ = read_inputs([samples])
    for s, new in zip(samples_read, report.records):
        assert new.response == s.record.response  # the text returned is kept (vote=none: the final text)
        assert new.response is not None and logged[s.record.doc_id]["tse"] == new.tse

    exp = parse_settings({"vote": "exp", "alpha": "2"})
    from_samples, from_traj = revote([samples], exp), revote([traj], exp)
    assert from_samples.rows[0].metrics == from_traj.rows[0].metrics
    traj_by_doc = {r.doc_id: r for r in from_traj.records}  # the trajectory file is in decoding order
    assert sorted(traj_by_doc) == sorted(r.doc_id for r in from_samples.records)
    for a in from_samples.records:
        b = traj_by_doc[a.doc_id]
        assert (a.vote, a.vote_step, a.tse, a.answers) == (b.vote, b.vote_step, b.tse, b.answers)
    with pytest.raises(RevoteError, match="holds none: run with --model_args trajectory_text=true"):
        revote([samples], {"vote": "exp", "protocol": "paper"})
    with pytest.raises(RevoteError, match="is also at"):
        revote([samples, traj], exp)
    unmarked = tmp_path / "samples_x_2026-01-01T00-00-00.000000.jsonl"
    line = json.loads(Path(samples).read_text().splitlines()[0])
    del line["doc"]["_temporal"]
    unmarked.write_text(json.dumps(line) + "\n")
    with pytest.raises(RevoteError, match=r"T00-00-00.000000.jsonl:1: no gold answer: the document has no '_temporal'"):
        revote([unmarked], exp)
