"""``lm-eval-temporal plot``: files written, numbers in the report, clear errors.

Correctness is replaced by string equality in every test (``answers.answer_correct``, which
``metrics.score`` calls), so the expected numbers are unambiguous.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from lm_eval_temporal import answers, plot  # noqa: E402
from lm_eval_temporal.plot import figures  # noqa: E402
from lm_eval_temporal.plot.samples import score_all  # noqa: E402
from lm_eval_temporal.cli import main  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _equal(answer, gold, answer_task, protocol="default"):
    return answer is not None and answer == gold


@pytest.fixture(autouse=True)
def string_equality(monkeypatch):
    monkeypatch.setattr(answers, "answer_correct", _equal)


def _rec(doc_id, gold, answers, vote, tse, task="gsm8k_temporal", answer_task="gsm8k", method="exp"):
    T = len(answers)
    return {
        "task": task,
        "doc_id": doc_id,
        "gold": gold,
        "v": 1,
        "answer_task": answer_task,
        "steps": T,
        "answers": answers,
        "final": answers[-1],
        "vote": vote,
        "vote_step": max((i for i, a in enumerate(answers) if a == vote), default=T - 1),
        "method": method,
        "tse": tse,
        "weights": [1.0] * T,
        "final_text": f"#### {answers[-1]}",
        "response": f"#### {vote}",
    }


# By hand, over the 4 records with gold: final-pass 2/4, ever-pass 3/4, vote 3/4;
# mean TSE over all 5 records (0 + 0.9 + 0 + 0.5 + 0.2) / 5 = 0.32.
# Answer correct at step 0..3: 1/4, 3/4, 1/4, 2/4; correct at some step so far: 1/4, 3/4, 3/4, 3/4.
RECORDS = [
    _rec(0, "18", [None, "18", "18", "18"], "18", 0.0),  # right
    _rec(1, "5", [None, "5", "7", "7"], "5", 0.9),  # vote fixes
    _rec(2, "3", ["4", "4", "4", "4"], "4", 0.0),  # wrong
    _rec(3, "9", ["9", "9", "2", "9"], "9", 0.5),  # right
    _rec(4, None, ["1", "1", "1", "1"], "1", 0.2),  # no gold
]


def _write(path: Path, records, extra: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + extra, encoding="utf-8")
    return path


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC


def test_plot_command_writes_pngs_and_self_contained_report(tmp_path, capsys):
    traj = _write(tmp_path / "traj.jsonl", RECORDS)
    out = tmp_path / "new" / "figures"  # created, parents included
    assert main(["plot", str(traj), "-o", str(out), "--samples", "4"]) == 0
    printed = capsys.readouterr().out.split()
    names = ["timelines.png", "accuracy_by_step.png", "tse.png", "report.html"]
    assert printed == [str(out / n) for n in names]
    for name in names[:3]:
        assert _is_png(out / name), name
    page = (out / "report.html").read_text(encoding="utf-8")
    for name in names[:3]:
        assert "data:image/png;base64," + base64.b64encode((out / name).read_bytes()).decode() in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing outside the page
    row = re.search(r"<tr><td>gsm8k_temporal</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells == ["5", "4", "50.0%", "75.0%", "75.0%", "0.320", "4", "exp"]
    assert "1 of 5 records have no gold answer" in page


def test_repeated_documents_are_counted_once(tmp_path):
    """A file appended to by two runs: the last record of each (task, doc_id) counts, and the report says so."""
    stale = dict(RECORDS[0], answers=["7", "7", "7", "7"], final="7", vote="7")
    traj = _write(tmp_path / "traj.jsonl", [stale] + RECORDS)
    out = tmp_path / "o"
    plot.plot_trajectories(traj, out)
    page = (out / "report.html").read_text(encoding="utf-8")
    cells = re.findall(r"<td>(.*?)</td>", re.search(r"<tr><td>gsm8k_temporal</td>(.*?)</tr>", page).group(1))
    assert cells[:5] == ["5", "4", "50.0%", "75.0%", "75.0%"]  # as without the stale record
    assert "1 records repeated a (task, doc_id) pair" in page


def test_numbers_and_curves_by_hand(tmp_path):
    samples = plot.load_trajectories(_write(tmp_path / "t.jsonl", RECORDS))
    score_all(samples)
    st = plot.summarize(samples)
    assert (st["n"], st["n_gold"]) == (5, 4)
    assert st["final_pass"] == 0.5 and st["ever_pass"] == 0.75 and st["vote_acc"] == 0.75
    assert st["mean_tse"] == pytest.approx(0.32)
    x, at, ever, label = figures.accuracy_curves([s for s in samples if s.has_gold])
    assert x == [0, 1, 2, 3] and label == "denoising step"
    assert at == [0.25, 0.75, 0.25, 0.5]
    assert ever == [0.25, 0.75, 0.75, 0.75]


def test_samples_are_picked_across_outcomes(tmp_path):
    samples = plot.load_trajectories(_write(tmp_path / "t.jsonl", RECORDS))
    score_all(samples)
    # vote fixes, then wrong, then right; records without gold only after those ran out
    assert [s.record.doc_id for s in plot.choose_samples(samples, 3)] == [1, 2, 3]
    assert [s.record.doc_id for s in plot.choose_samples(samples, 99)] == [1, 2, 3, 0, 4]
    assert plot.choose_samples(samples, 0) == []


def test_several_tasks_latex_answers_and_no_timelines(tmp_path):
    math = [
        _rec(0, "\\frac{1}{2}", [None, "$x$", "\\frac{1}{2}"], "\\frac{1}{2}", 0.4, "math500", "math500"),
        _rec(1, "\\sqrt{2}", ["{", "\\left(", "2^{"], "{", 1.2, "math500", "math500"),
        # a different step count: compared at the same fraction of denoising
        _rec(2, "7", ["7"] * 5, None, 0.0, "math500", "math500", method="none"),
    ]
    traj = _write(tmp_path / "t.jsonl", RECORDS + math)
    out = tmp_path / "o"
    written = plot.plot_trajectories(str(traj), str(out), samples=0)
    assert [p.name for p in written] == ["accuracy_by_step.png", "tse.png", "report.html"]
    page = (out / "report.html").read_text(encoding="utf-8")
    cells = re.findall(r"<td>(.*?)</td>", re.search(r"<tr><td>math500</td>(.*?)</tr>", page).group(1))
    # final-pass 2/3, ever-pass 2/3, vote over the 2 voted records 1/2
    assert cells[:6] == ["3", "3", "66.7%", "66.7%", "50.0%", "0.533"]
    assert cells[6:] == ["3, 5", "exp, none"]
    assert "<tr><td>all</td><td>8</td><td>7</td>" in page


def test_no_gold_at_all_skips_accuracy(tmp_path):
    records = [dict(r, gold=None) for r in RECORDS]
    out = tmp_path / "o"
    written = plot.plot_trajectories(_write(tmp_path / "t.jsonl", records), out)
    assert [p.name for p in written] == ["timelines.png", "tse.png", "report.html"]
    assert not (out / "accuracy_by_step.png").exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "No record has a gold answer" in page
    assert "<td>5</td><td>0</td><td>–</td><td>–</td><td>–</td><td>0.320</td>" in page


def test_rank_files_glob_and_old_layout(tmp_path):
    _write(tmp_path / "run.rank0.jsonl", RECORDS[:2])
    _write(tmp_path / "run.rank1.jsonl", RECORDS[2:])
    assert len(plot.load_trajectories(tmp_path / "run.jsonl")) == 5  # the trajectory_path given
    assert len(plot.load_trajectories(str(tmp_path / "run.rank*.jsonl"))) == 5
    assert len(plot.load_trajectories([tmp_path / "run.rank0.jsonl", tmp_path / "run.rank1.jsonl"])) == 5
    # Version 1 lines held a plain list of answers; version 2 run-length pairs: both read the same.
    rl = dict(RECORDS[1], answers=[[None, 1], ["5", 1], ["7", 2]], v=2)
    a, b = plot.load_trajectories(_write(tmp_path / "old.jsonl", [RECORDS[1], rl]))
    assert a.record.answers == b.record.answers == RECORDS[1]["answers"]
    assert (a.task, a.record.answer_task) == ("gsm8k_temporal", "gsm8k")


def test_errors_are_clear(tmp_path, capsys):
    def cli_error(args) -> str:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
        return capsys.readouterr().err

    assert "trajectory file not found" in cli_error(["plot", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")])
    with pytest.raises(IsADirectoryError, match="is a folder"):
        plot.load_trajectories(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(plot.TrajectoryError, match="empty"):
        plot.plot_trajectories(empty, tmp_path / "o")
    assert "empty" in cli_error(["plot", str(empty), "-o", str(tmp_path / "o")])
    bad = _write(tmp_path / "bad.jsonl", RECORDS[:2], extra='{"task": "gsm8k", "answers": [')
    with pytest.raises(plot.TrajectoryError, match=r"bad\.jsonl:3: not valid JSON.*partial last line"):
        plot.plot_trajectories(bad, tmp_path / "o")
    no_answers = _write(tmp_path / "na.jsonl", [RECORDS[0], {"task": "gsm8k", "doc_id": 1, "final": "3"}])
    with pytest.raises(plot.TrajectoryError, match=r"na\.jsonl:2: record has no per-step 'answers'"):
        plot.load_trajectories(no_answers)
    not_object = _write(tmp_path / "list.jsonl", [[1, 2]])
    with pytest.raises(plot.TrajectoryError, match=r"list\.jsonl:1: expected a JSON object"):
        plot.load_trajectories(not_object)
    with pytest.raises(ValueError, match="samples"):
        plot.plot_trajectories(_write(tmp_path / "t.jsonl", RECORDS), tmp_path / "o", samples=-1)
    assert not (tmp_path / "o").exists()  # nothing written on errors


def test_missing_matplotlib_says_which_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(ImportError, match=r'pip install "lm-eval-temporal\[plot\]"'):
        plot.plot_trajectories(_write(tmp_path / "t.jsonl", RECORDS), tmp_path / "o")


def test_correctness_comes_from_the_one_scorer(tmp_path, monkeypatch):
    """plot scores through metrics.score, which judges with answers.answer_correct."""
    calls = []
    monkeypatch.setattr(answers, "answer_correct", lambda a, g, t, p: calls.append((a, g, t, p)) or a == g)
    (s,) = plot.load_trajectories(_write(tmp_path / "one.jsonl", RECORDS[:1]))
    score_all([s])
    assert sorted(calls) == [("18", "18", "gsm8k", "default")]  # once per distinct answer, the record's parser
    assert s.final_ok and s.ever_ok and s.vote_ok
