"""The run record, its sidecar and ``lm-eval-temporal verify``: an honest run passes, and each
kind of tampering fails with its own message. One real ``lm_eval`` run on the embedded model
(arith_chain, 8 documents); each test edits a copy of it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lm_eval_temporal import run_record, sidecar
from lm_eval_temporal.cli import main
from lm_eval_temporal.verify import verify_run

LM_EVAL = os.path.join(os.path.dirname(sys.executable), "lm_eval")


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify_run")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([LM_EVAL, "--model", "llada_temporal", "--model_args", f"trajectory_path={out / 'traj.jsonl'}",
                        "--tasks", "arith_chain", "--limit", "8", "--batch_size", "8", "--log_samples",
                        "--output_path", str(out)], capture_output=True, text=True, env=env, cwd=out, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture
def run(honest, tmp_path) -> Path:
    """A copy of the honest run to tamper with (the trajectory file travels inside it)."""
    copy = tmp_path / "run"
    shutil.copytree(honest, copy)
    side = next(copy.rglob("run_record_*.json"))
    data = json.loads(side.read_text())
    for entry in data["trajectories"]:
        entry["file"] = str(copy / Path(entry["file"]).name)
    side.write_text(json.dumps(data))
    return copy


def files(run: Path) -> tuple[Path, Path, Path]:
    return next(run.rglob("results_*.json")), next(run.rglob("samples_arith_chain_*.jsonl")), \
        next(run.rglob("run_record_*.json"))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def problems_of(run: Path, **kw) -> list[str]:
    report = verify_run(run, **kw)
    assert report.ok == (not report.problems)
    return report.problems


def test_an_honest_limited_run_passes_with_allow_limit_and_rederives_every_metric(honest):
    report = verify_run(honest, allow_limit=True)
    assert report.ok, report.problems
    (check,) = report.runs
    task = check.tasks["arith_chain"]
    reported = json.loads(check.results_file.read_text())["results"]["arith_chain"]
    for key in ("exact_match,none", "final_pass,none", "ever_pass,none", "tse,none", "tpf,none", "nfe,none"):
        assert task.metrics[key] == pytest.approx(reported[key], abs=1e-9)
    assert task.metrics["vote_gain,none"] == pytest.approx(reported["exact_match,none"] - reported["final_pass,none"])
    assert (task.samples, task.documents, task.protocol, task.method) == (8, 300, "default", "exp")


def test_the_record_is_complete_and_its_references_resolve(honest):
    results = json.loads(next(honest.rglob("results_*.json")).read_text())
    assert run_record.missing_fields(results) == []
    record = results["config"]["llada_temporal"]
    assert record["run_record"]["schema"] == run_record.RUN_RECORD_SCHEMA
    entry = record["run_record"]["evaluation"]["tasks"]["arith_chain"]
    assert entry["config_files"] == ["arith_chain.yaml", "_temporal_template.yaml", "utils.py"]
    assert entry["dataset"]["source"] == "generated" and len(entry["dataset"]["sha256"]) == 64
    assert run_record.resolve(results, "/config/llada_temporal/run_record/evaluation/tasks/arith_chain/n_shot") == 0
    eff = record["efficiency"]
    assert eff["output_tokens"] == eff["tokens"] and eff["generation_seconds"] > 0
    assert eff["tokens_per_second"] == pytest.approx(eff["tokens"] / eff["generation_seconds"])
    assert (eff["warmup_runs"], eff["timed_repeats"], eff["device_count"], eff["batch_size"]) == (0, 1, 1, 8)


def test_the_sidecar_hashes_every_file_the_run_wrote(honest):
    results, samples, side = files(honest)
    data = json.loads(side.read_text())
    assert data["results"] == {"file": results.name, "sha256": run_record.file_sha256(results)}
    assert data["samples"]["arith_chain"]["sha256"] == run_record.file_sha256(samples)
    assert data["samples"]["arith_chain"]["lines"] == 8
    (traj,) = data["trajectories"]
    assert traj["sha256"] == run_record.file_sha256(honest / "traj.jsonl")


def test_a_limit_run_fails_without_allow_limit(run):
    problems = problems_of(run)
    assert any("arith_chain: a limited run: 8 of 300 documents evaluated" in p for p in problems)
    assert any("--limit 8.0 was set; pass --allow-limit" in p for p in problems)


def test_a_tampered_number_in_the_results_fails(run):
    results, _, _ = files(run)
    edit_json(results, lambda d: d["results"]["arith_chain"].update({"ever_pass,none": 0.5}))
    problems = problems_of(run, allow_limit=True)
    assert any("arith_chain: reported ever_pass,none=0.5 but the samples give 1.0" in p for p in problems)
    assert any(f"{results.name}: sha256 differs" in p for p in problems)


def test_a_missing_sample_line_fails(run):
    _, samples, _ = files(run)
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:-1]))
    problems = problems_of(run, allow_limit=True)
    assert any("the samples hold 7 documents but n-samples effective=8" in p for p in problems)


def test_a_modified_samples_file_fails_on_its_hash(run):
    _, samples, side = files(run)
    lines = samples.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    first["prompt_hash"] = "0" * 64  # no metric reads it: only the hash can tell
    samples.write_text(json.dumps(first) + "\n" + "".join(lines[1:]))
    problems = problems_of(run, allow_limit=True)
    assert problems == [f"{samples.parent.name}/{next(run.rglob('results_*.json')).name}: {samples.name}: sha256 "
                        f"differs from {side.name} (the file changed after the run)"]


def test_an_edited_trace_fails_against_its_own_per_step_answers(run):
    _, samples, _ = files(run)
    lines = samples.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    first["filtered_resps"][0] = first["filtered_resps"][0].replace('"tse":', '"tse":1.5e0,"x":', 1)
    samples.write_text(json.dumps(first) + "\n" + "".join(lines[1:]))
    problems = problems_of(run, allow_limit=True)
    assert any(f"doc_id {first['doc_id']}: trace tse=1.5 but its per-step answers give" in p for p in problems)


def test_an_incomplete_record_lists_each_missing_field(run):
    results, _, _ = files(run)
    edit_json(results, lambda d: (d["config"]["llada_temporal"]["efficiency"].pop("generation_seconds"),
                                  d["config"]["llada_temporal"]["checkpoint"].pop("tokenizer_sha256"),
                                  d.pop("n-shot")))
    problems = problems_of(run, allow_limit=True)
    for field in ("/config/llada_temporal/efficiency/generation_seconds",
                  "/config/llada_temporal/checkpoint/tokenizer_sha256"):
        assert any(p.endswith(f"run record: missing {field}") for p in problems)
    assert any("refers to /n-shot/arith_chain, which the results JSON does not hold" in p for p in problems)


def test_a_protocol_that_differs_from_the_traces_fails(run):
    results, _, _ = files(run)
    edit_json(results, lambda d: d["config"]["llada_temporal"]["temporal"].update(protocol="paper"))
    problems = problems_of(run, allow_limit=True)
    assert any("arith_chain: traces use protocol=default, vote=exp but the run's settings say protocol=paper" in p
               for p in problems)


def test_a_group_metric_is_rederived_from_its_subtasks(run):
    results, _, _ = files(run)

    def add_group(value):
        def change(d):
            d["group_subtasks"] = {"g": ["arith_chain"]}
            d["results"]["g"] = {"final_pass,none": value, "final_pass_stderr,none": "N/A"}
        return change

    edit_json(results, add_group(1.0))
    assert not any(p.startswith("g:") or ": g:" in p for p in problems_of(run, allow_limit=True))
    edit_json(results, add_group(0.25))
    assert any("g: reported final_pass,none=0.25 but its subtasks give 1.0" in p for p in problems_of(run, allow_limit=True))


def test_a_missing_sidecar_fails(run):
    _, _, side = files(run)
    side.unlink()
    assert any(f"no sidecar {side.name}" in p for p in problems_of(run, allow_limit=True))


def test_cli_exit_status_lines_and_json(run, capsys):
    assert main(["verify", str(run), "--allow-limit"]) == 0
    assert capsys.readouterr().out.startswith("ok: 1 run(s), 1 task(s) verified")
    assert main(["verify", str(run), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and len(report["problems"]) == 2
    assert report["runs"][0]["tasks"]["arith_chain"]["metrics"]["exact_match,none"] == 1.0
    assert main(["verify", str(run / "nothing")]) == 1
    assert "no lm-eval results_*.json file found" in capsys.readouterr().out


def test_json_pointers_escape_and_follow_references():
    doc = {"n-shot": {"a/b": 0}, "x": {"$ref": "/n-shot"}, "list": [{"k": 1}]}
    assert run_record.resolve(doc, "/n-shot/a~1b") == 0
    assert run_record.resolve(doc, "/x/a~1b") == 0  # through the reference
    assert run_record.resolve(doc, "/x") == {"a/b": 0}
    assert run_record.resolve(doc, "/x", follow=False) == {"$ref": "/n-shot"}
    assert run_record.resolve(doc, "/list/0/k") == 1
    with pytest.raises(KeyError):
        run_record.resolve(doc, "/n-shot/c")


def test_no_sidecar_for_another_backends_results(tmp_path):
    results = tmp_path / "results_2026-01-01T00-00-00.json"
    results.write_text(json.dumps({"config": {"model": "hf"}, "configs": {}}))
    assert sidecar.build(results) is None
    assert sidecar.update(str(tmp_path / "x.json"), "m", "2026-01-01T00-00-00") is None
    assert not list(tmp_path.glob("run_record_*"))
