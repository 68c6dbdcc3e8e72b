"""``lm-eval-temporal leaderboard``: aggregation of real runs, the display rule (missing values
are an em dash, never 0), protocol and verification never mixed silently, HTML escaping, a
parseable CSV.

Verification is :func:`lm_eval_temporal.leaderboard.verify_folder`, replaced in these tests
(the verifier is another module); its adapter is tested against a stand-in ``verify`` module.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lm_eval_temporal import leaderboard as lb
from lm_eval_temporal.cli import main
from lm_eval_temporal.leaderboard_html import to_html

LM_EVAL = os.path.join(os.path.dirname(sys.executable), "lm_eval")
EM_DASH = "—"


def verdicts(monkeypatch, bad: dict[str, tuple[str, ...]] | None = None):
    """Replace verify: a folder whose path contains a key of ``bad`` fails with those problems,
    every other folder passes."""
    def fake(folder, *, allow_limit=False):
        for part, problems in (bad or {}).items():
            if part in str(folder):
                return lb.Verdict(False, problems)
        return lb.Verdict(True)
    monkeypatch.setattr(lb, "verify_folder", fake)


# ------------------------------------------------------------------ two real runs (built once)

@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """Two lm_eval runs of the embedded model on 8 arith_chain docs: the default vote (exp) and
    vote=linear, run side by side."""
    root = tmp_path_factory.mktemp("leaderboard_runs")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    runs = {"exp": [], "linear": ["--model_args", "vote=linear"]}
    procs = {name: subprocess.Popen([LM_EVAL, "--model", "llada_temporal", "--tasks", "arith_chain", "--limit", "8",
                                     "--batch_size", "8", "--log_samples", "--output_path", str(root / name), *extra],
                                    cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, extra in runs.items()}
    for name, p in procs.items():
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, f"lm_eval ({name}) failed:\n{out[-3000:]}"
    return {name: root / name for name in runs}


def results_json(folder: Path) -> dict:
    (path,) = folder.rglob("results_*.json")
    return json.loads(path.read_text())


@pytest.mark.slow
def test_two_real_runs_make_two_rows_with_the_recorded_numbers(real_runs, monkeypatch, tmp_path):
    verdicts(monkeypatch, bad={"/linear/": ("arith_chain: 8 of 300 documents (a --limit run)",)})
    board = lb.build([real_runs["exp"], real_runs["linear"]])
    assert board.columns == ["arith_chain"]
    assert [r.fields["vote"] for r in board.rows] == ["exp α=5", "linear"]  # verified first
    assert [r.verified for r in board.rows] == [True, False]
    for row, name in zip(board.rows, ("exp", "linear")):
        data = results_json(real_runs[name])
        res, ck = data["results"]["arith_chain"], data["config"]["llada_temporal"]["checkpoint"]
        assert ck["weights_sha256"][:12] in row.fields["model"]
        assert row.fields["protocol"] == "default" and row.fields["family"] == "llada"
        values = row.cells["arith_chain"].values
        for metric in ("exact_match", "final_pass", "ever_pass", "tse", "tpf"):
            assert values[metric] == res[f"{metric},none"]
        assert values["vote_gain"] == res["exact_match,none"] - res["final_pass,none"]
        assert row.cells["arith_chain"].samples == "8/300"
    assert any("1 of 2 rows come from unverified runs" in n for n in board.notes)
    assert not any("protocols" in n for n in board.notes)

    assert main(["leaderboard", str(real_runs["exp"]), str(real_runs["linear"]), "-o", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "leaderboard.csv").read_text())))
    assert [r["vote"] for r in rows] == ["exp α=5", "linear"]
    exp = results_json(real_runs["exp"])["results"]["arith_chain"]
    assert float(rows[0]["arith_chain:tpf"]) == exp["tpf,none"]
    assert rows[1]["status"].startswith("unverified: arith_chain: 8 of 300")
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    assert page.count('class="badge bad"') == 1 and page.count('class="badge ok"') == 1
    assert "8 of 300 documents" in (tmp_path / "out" / "leaderboard.md").read_text()


# ------------------------------------------------------------------ hand-made results files

def write_run(root: Path, *, name: str = "run", task: str = "arith_chain", metrics: dict | None = None,
              pretrained: str = "embedded", protocol: str = "default", vote: str = "exp", date: float = 1.0,
              sha: str = "ab" * 32) -> Path:
    """A results file laid out as lm-eval writes one (``root/<model>/results_<date>.json``)."""
    metrics = {"exact_match": 0.75, "final_pass": 0.5, "ever_pass": 0.875, "tse": 0.25, "tpf": 1.5} \
        if metrics is None else metrics
    data = {
        "results": {task: {"alias": task, **{f"{k},none": v for k, v in metrics.items()},
                           "exact_match_stderr,none": 0.1}},
        "n-samples": {task: {"original": 300, "effective": 300}},
        "date": date,
        "config": {"model": "llada_temporal", "model_args": {},
                   "llada_temporal": {
                       "settings": {"pretrained": pretrained, "vote": vote, "protocol": protocol},
                       "family": "llada",
                       "schedules": [{"gen_length": 32, "steps": 16, "block_length": 8, "temperature": 0.0,
                                      "tasks": [task]}],
                       "checkpoint": {"pretrained": pretrained, "revision": None, "weights_sha256": sha}}},
    }
    folder = root / name / "model"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"results_{date}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return root / name


def test_missing_values_are_an_em_dash_never_zero(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    # an older run: no tpf at all, TSE NaN (another backend's trace), final_pass "N/A"
    run = write_run(tmp_path, metrics={"exact_match": 0.5, "final_pass": "N/A", "ever_pass": 0.0,
                                       "tse": float("nan")})
    board = lb.build([run])
    values = board.rows[0].cells["arith_chain"].values
    assert values == {"exact_match": 0.5, "final_pass": None, "ever_pass": 0.0, "vote_gain": None, "tse": None,
                      "tpf": None}
    md_row = lb.to_markdown(board).splitlines()[-1].split(" | ")
    assert md_row[-6:] == ["50.0", EM_DASH, "0.0", EM_DASH, EM_DASH, EM_DASH + " |"]  # a real 0 stays 0.0
    cells = re.findall(r"<td class=\"(?:num|missing)[^\"]*\"[^>]*>([^<]*)</td>", to_html(board))
    assert cells == ["50.0", EM_DASH, "0.0", EM_DASH, EM_DASH, EM_DASH]
    (row,) = csv.DictReader(io.StringIO(lb.to_csv(board)))
    assert [row[f"arith_chain:{m}"] for m, _ in lb.METRICS] == ["0.5", "", "0.0", "", "", ""]


def test_a_task_the_row_did_not_run_is_an_em_dash(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    a = write_run(tmp_path, name="a", task="arith_chain")
    b = write_run(tmp_path, name="b", task="svamp", sha="cd" * 32)
    board = lb.build([a, b])
    assert board.columns == ["arith_chain", "svamp"]
    md = lb.to_markdown(board)
    assert md.splitlines()[-1].count(EM_DASH) >= 6 and md.splitlines()[-2].count(EM_DASH) >= 6


def test_one_model_on_two_tasks_is_one_row_and_a_rerun_shows_the_latest(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    a = write_run(tmp_path, name="a", task="arith_chain")
    b = write_run(tmp_path, name="b", task="svamp")
    c = write_run(tmp_path, name="c", task="svamp", date=2.0, metrics={"exact_match": 0.25})
    board = lb.build([c, a, b])
    (row,) = board.rows
    assert sorted(row.cells) == ["arith_chain", "svamp"]
    assert row.cells["svamp"].values["exact_match"] == 0.25  # date 2.0 beats 1.0 whatever the order
    assert any("svamp: more than one run; the latest is shown" in n for n in board.notes)


def test_a_column_of_two_protocols_gets_a_note_and_each_row_its_protocol(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    a = write_run(tmp_path, name="a", protocol="default")
    b = write_run(tmp_path, name="b", protocol="paper")
    c = write_run(tmp_path, name="c", protocol="paper", task="svamp")
    board = lb.build([a, b, c])
    assert sorted(r.fields["protocol"] for r in board.rows) == ["default", "paper"]  # b and c: one row
    (note,) = [n for n in board.notes if "protocols" in n]
    assert note.startswith("arith_chain: rows of 2 protocols (default, paper)")
    for text in (lb.to_markdown(board), to_html(board)):
        assert "arith_chain: rows of 2 protocols" in text and "svamp: rows of" not in text
    assert lb.build([a]).notes == []


def test_unverified_runs_carry_a_badge_with_the_reason(tmp_path, monkeypatch):
    verdicts(monkeypatch, bad={"/b": ("exact_match,none: reported 0.75, samples give 0.5", "hash mismatch")})
    a = write_run(tmp_path, name="a")
    b = write_run(tmp_path, name="b", vote="linear")
    board = lb.build([a, b])
    bad = next(r for r in board.rows if not r.verified)
    assert bad.fields["vote"] == "linear"
    assert bad.status == "unverified: exact_match,none: reported 0.75, samples give 0.5; hash mismatch"
    page = to_html(board)
    assert re.search(r'<span class="badge bad">unverified</span><div class="why">exact_match,none: reported 0\.75',
                     page)
    assert "⚠ **unverified**: exact_match,none: reported 0.75" in lb.to_markdown(board)
    assert any(n.startswith("arith_chain: 1 of 2 rows come from unverified runs") for n in board.notes)


def test_verify_adapter_reads_a_report_and_marks_a_missing_verifier(tmp_path, monkeypatch):
    calls = []

    class Report:
        def __init__(self, problems):
            self.problems = problems

        @property
        def ok(self):
            return not self.problems

    def verify_run(results_dir, *, allow_limit=False):
        calls.append((Path(results_dir), allow_limit))
        return Report([] if "good" in str(results_dir) else ["svamp: doc 3 missing"])

    monkeypatch.setitem(sys.modules, "lm_eval_temporal.verify", types.SimpleNamespace(verify_run=verify_run))
    assert lb.verify_folder(tmp_path / "good", allow_limit=True) == lb.Verdict(True)
    assert lb.verify_folder(tmp_path / "bad") == lb.Verdict(False, ("svamp: doc 3 missing",))
    assert calls == [(tmp_path / "good", True), (tmp_path / "bad", False)]

    monkeypatch.setitem(sys.modules, "lm_eval_temporal.verify", None)  # import fails
    run = write_run(tmp_path)
    (row,) = lb.build([run]).rows
    assert row.status == "unverified: verify not available"


def test_hostile_names_are_escaped_in_the_html(tmp_path, monkeypatch):
    hostile = '<script>alert("x")</script>'
    verdicts(monkeypatch, bad={"": ('<img src=x onerror="alert(1)">',)})
    run = write_run(tmp_path, pretrained=hostile, task="t<b>&amp;")
    page = to_html(lb.build([run]))
    assert hostile not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "t&lt;b&gt;&amp;amp;" in page
    assert page.count("<script>") == 1  # the page's own sorting script
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page  # the problem text, shown as text


def test_the_page_loads_nothing_from_elsewhere(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    page = to_html(lb.build([write_run(tmp_path)]))
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(|https?://", page)
    assert "<style>" in page and "<script>" in page  # inline


def test_csv_is_parseable_and_markdown_cells_keep_their_columns(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    run = write_run(tmp_path, pretrained='we|ird, "name"\nx')
    board = lb.build([run])
    rows = list(csv.reader(io.StringIO(lb.to_csv(board))))
    assert len(rows) == 2 and len(rows[0]) == len(rows[1]) == len(lb.FIELDS) + 8
    assert rows[0][:len(lb.FIELDS)] == list(lb.FIELDS)
    assert rows[1][0].startswith('we|ird, "name"\nx')
    assert float(rows[1][rows[0].index("arith_chain:vote_gain")]) == 0.25
    md = lb.to_markdown(board).splitlines()
    assert md[-1].count(" | ") == md[-3].count(" | ")  # the | in the name is escaped


def test_other_backends_are_rows_without_a_protocol(tmp_path, monkeypatch):
    verdicts(monkeypatch)
    run = write_run(tmp_path)
    path = next(run.rglob("results_*.json"))
    data = json.loads(path.read_text())
    data["config"] = {"model": "hf", "model_args": "pretrained=gpt2"}
    path.write_text(json.dumps(data))
    (row,) = lb.build([run]).rows
    assert row.fields["model"] == "hf (pretrained=gpt2)" and row.fields["protocol"] == EM_DASH


def test_errors_name_the_folder_or_file(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(lb.LeaderboardError, match=f"{empty}: no results_"):
        lb.build([empty])
    assert main(["leaderboard", str(tmp_path / "nope"), "-o", str(tmp_path / "out")]) == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    bad = tmp_path / "bad" / "results_x.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(lb.LeaderboardError, match="results_x.json: not a readable results JSON"):
        lb.read_run(bad, lb.Verdict(True))


def test_rows_are_verified_first_then_by_protocol_then_best_score(tmp_path, monkeypatch):
    verdicts(monkeypatch, bad={"/d": ("hash mismatch",)})
    runs = [write_run(tmp_path, name="a", vote="none", metrics={"exact_match": 0.25}),
            write_run(tmp_path, name="b", vote="linear", metrics={"exact_match": 0.5}),
            write_run(tmp_path, name="c", vote="exp", protocol="paper", metrics={"exact_match": 0.9}),
            write_run(tmp_path, name="d", vote="fixed", metrics={"exact_match": 1.0}),
            write_run(tmp_path, name="e", vote="gated", metrics={})]
    board = lb.build(runs)
    assert [r.fields["vote"] for r in board.rows] == ["linear", "none", "gated α=5", "exp α=5", "fixed"]
