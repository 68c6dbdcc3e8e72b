"""The leaderboard CI example, run as CI runs it (its shell script, on CPU): evaluate the
embedded model, verify the run from its files, build the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "ci" / "leaderboard.sh"


def test_workflow_runs_the_script_and_uploads_both_folders():
    workflow = (REPO / "examples" / "ci" / "leaderboard.yml").read_text()
    assert "examples/ci/leaderboard.sh out" in workflow
    assert "out/run" in workflow and "out/board" in workflow


def test_ci_example_evaluates_verifies_and_tabulates(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "ok: 1 run(s), 1 task(s) verified" in r.stdout
    board = tmp_path / "out" / "board"
    html = (board / "leaderboard.html").read_text()
    assert "arith_chain" in html and "unverified" not in (board / "leaderboard.md").read_text()
    # the run's files stay standard lm-eval output (next to our sidecar and trajectory file)
    run = tmp_path / "out" / "run"
    assert list(run.rglob("results_*.json")) and list(run.rglob("samples_arith_chain_*.jsonl"))
    assert list(run.rglob("run_record_*.json")) and (run / "trajectory.jsonl").exists()
