"""The benchmark scripts run (``--quick``: a few short generations) and end with their
documented last line. No timing assertions: the numbers depend on the machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
NUM = r"-?\d+(?:\.\d+)?"
SCRIPTS = {
    "voting_overhead.py": ([], rf"overhead_ratio={NUM}"),
    "batching.py": ([], rf"speedup_batch8={NUM}"),
    "capture_overhead.py": ([], rf"capture_overhead_ratio={NUM}"),
    "early_stop.py": ([], rf"early_stop_best=\S+ saved={NUM}% delta=[+-]\d+\.\d\d"),
    "voting_regimes.py": (["--out_dir", "{tmp}"], rf"vote_gain_vs_final=(?:\w+:[+-]\d+\.\d\d,?){{4}}"),
    "sampler_step.py": ([], rf"sampler_step_overhead={NUM}"),
    "gpu.py": ([], rf"gsm8k256_projected_min={NUM}"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """All scripts at once (two at a time would take as long on a two-core machine, and
    each is mostly interpreter start-up)."""
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    procs = {}
    for script, (args, _) in SCRIPTS.items():
        cmd = [sys.executable, str(BENCH / script), "--quick", "--threads", "1", *[x.format(tmp=tmp) for x in args]]
        procs[script] = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for script, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[script] = (proc.returncode, stdout, stderr)
    return out, tmp


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_quick_run_ends_with_its_line(runs, script):
    results, _ = runs
    code, stdout, stderr = results[script]
    assert code == 0, stderr[-3000:]
    last = stdout.strip().splitlines()[-1]
    assert re.fullmatch(SCRIPTS[script][1], last), last


def test_voting_regimes_scores_existing_trajectory_files(runs):
    _, tmp = runs
    (traj,) = tmp.glob("*.jsonl")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "voting_regimes.py"), "--trajectories", str(traj), "--gate", "2:0.9"],
        capture_output=True, text=True, timeout=120, cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"| {traj.stem} | all | 4 |" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("vote_gain_vs_final=fixed:")


def test_batching_reports_the_forward_only_ceiling(runs):
    results, _ = runs
    code, stdout, stderr = results["batching.py"]
    assert code == 0, stderr[-3000:]
    assert re.search(rf"^forward only: batch_size=8 +{NUM} ms/row  speedup +{NUM}x$", stdout, re.M), stdout
    assert re.search(rf"^forward_only_speedup_batch8={NUM}$", stdout, re.M), stdout


def test_tcr_study_quick_runs_every_job_and_resumes(tmp_path):
    """The study's whole machinery on a few steps: every job's result, the table with one row
    per run and per reward mean, both claim lines; a second call reruns only the job whose
    result is missing (its adapter is reused, not retrained)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "study"
    cmd = [sys.executable, str(BENCH / "tcr_study.py"), "--quick", "--out", str(out), "--parallel", "2"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    jobs = ["base", "tse_s0", "accuracy_s0", "accuracy+tse_s0"]
    assert all((out / j / "result.json").is_file() for j in jobs)
    rows = [x for x in first.stdout.splitlines() if x.startswith("| ") and not x.startswith("| model")]
    assert len(rows) == 1 + 3 * 2, first.stdout
    assert re.search(r"Claim \(a\).*\*\*(holds|does not hold)\*\*", first.stdout)
    assert re.search(r"Claim \(b\).*\*\*(holds|does not hold)\*\*", first.stdout)
    kept = {j: (out / j / "result.json").stat().st_mtime_ns for j in jobs if j != "tse_s0"}
    adapter = (out / "tse_s0" / "adapter" / "adapter_model.safetensors").read_bytes()
    (out / "tse_s0" / "result.json").unlink()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {j: (out / j / "result.json").stat().st_mtime_ns for j in kept} == kept
    assert (out / "tse_s0" / "result.json").is_file()
    assert (out / "tse_s0" / "adapter" / "adapter_model.safetensors").read_bytes() == adapter
    assert "already holds an adapter" in (out / "tse_s0" / "log.txt").read_text()
    assert rows == [x for x in second.stdout.splitlines() if x.startswith("| ") and not x.startswith("| model")]
