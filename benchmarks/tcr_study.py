"""The pre-registered TCR study (docs/tcr_evidence.md): three rewards x three seeds of TCR on the
shipped testbed (``pretrained=embedded:testbed``), each adapter evaluated through the backend
on the 300 held-out ``arith_chain`` problems, and a paired bootstrap over problems per claim.

    python benchmarks/tcr_study.py [--out runs/tcr_study] [--parallel 2] [--quick]

Every job (the base model's evaluation, and per reward and seed one training plus its
evaluation) runs in its own subprocess, ``--parallel`` at a time, each on one CPU thread, its
log in ``OUT/<job>/log.txt``. A job is done when ``OUT/<job>/result.json`` exists; rerunning
the command skips finished jobs and resumes an interrupted training from its last checkpoint
(``save_steps``), so an interrupted study loses at most one checkpoint interval per job. The
table (markdown) and every number behind it go to stdout and ``OUT/study.json``.

``--quick`` (the test suite): one seed, a few optimiser steps, 6 problems; the machinery only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lm_eval_temporal.tiny import TESTBED_EVAL  # temperature 0.9, seed 1234, vote=fixed (section 1)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    """What docs/tcr_evidence.md pre-registers. Changing any of it is a new study."""

    config: str = "examples/tcr_tiny_cpu.yaml"  # every TCR setting not named here
    rewards: dict[str, list[str]] = field(default_factory=lambda: {
        "tse": ["tse"],                       # TSE only (label-free)
        "accuracy": ["accuracy"],             # diffu-GRPO control
        "accuracy+tse": ["accuracy", "confidence"],  # the paper's TSE + accuracy reward
    })
    seeds: tuple[int, ...] = (0, 1, 2)
    task: str = "arith_chain"
    limit: int | None = None      # all 300 problems
    eval_args: dict[str, object] = field(default_factory=lambda: {**TESTBED_EVAL, "batch_size": 50})
    bootstrap: int = 2000
    bootstrap_seed: int = 0
    tse_drop: float = 0.20        # claim (a): TSE-only lowers mean TSE by at least this share

    def jobs(self) -> list[str]:
        return ["base"] + [f"{r}_s{s}" for r in self.rewards for s in self.seeds]


def quick_plan() -> Plan:
    return Plan(seeds=(0,), limit=6)


QUICK_OVERRIDES = ["--max_steps", "2", "--num_iterations", "1", "--save_steps", "1", "--prompts_per_batch", "2",
                   "--num_generations", "2"]


# ---------------------------------------------------------------- one job (in a subprocess)

def run_job(job: str, out: Path, plan: Plan, quick: bool) -> None:
    """Train (unless ``base``), evaluate, write ``out/job/result.json`` last."""
    import logging

    import torch

    from lm_eval_temporal.tcr.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    d = out / job
    d.mkdir(parents=True, exist_ok=True)
    if job == "base":
        cfg, peft = load_config(ROOT / plan.config), None
    else:
        from lm_eval_temporal.tcr.trainer import TCRTrainer

        reward, seed = job.rsplit("_s", 1)
        overrides = ["--rewards", ",".join(plan.rewards[reward]), "--seed", seed, "--output_dir", str(d / "adapter"),
                     "--progress", "false", "--report_to", "jsonl"] + (QUICK_OVERRIDES if quick else [])
        cfg = load_config(ROOT / plan.config, overrides)
        peft = str(TCRTrainer(cfg).train())
    records = evaluate(d / "eval.jsonl", plan, cfg.pretrained, peft)
    tmp = d / "result.json.tmp"
    tmp.write_text(json.dumps({"job": job, "per_problem": records}) + "\n", encoding="utf-8")
    os.replace(tmp, d / "result.json")


def evaluate(path: Path, plan: Plan, pretrained: str, peft: str | None) -> dict[str, list]:
    """Per problem (in doc order): final / vote / ever correct and TSE, through the backend."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _requests import task_requests

    from lm_eval_temporal import metrics, recorded
    from lm_eval_temporal.backend import LLaDATemporalLM

    path.unlink(missing_ok=True)
    lm = LLaDATemporalLM(pretrained=pretrained, peft=peft, trajectory_path=str(path), **plan.eval_args)
    lm.generate_until(task_requests(plan.task, plan.limit), disable_tqdm=True)
    samples = sorted(recorded.read_file(path)[0], key=lambda s: s.record.doc_id)
    scores = [metrics.score(s.record, s.record.gold, task=s.scorer) for s in samples]
    return {"doc_id": [s.record.doc_id for s in samples], "final": [s.final_pass for s in scores],
            "vote": [s.vote_pass for s in scores], "ever": [s.ever_pass for s in scores],
            "tse": [s.tse for s in scores]}


# ---------------------------------------------------------------- the study (parent process)

def launch(job: str, out: Path, quick: bool) -> tuple[str, int]:
    (out / job).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--out", str(out), "--job", job] + (["--quick"] if quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with (out / job / "log.txt").open("a", encoding="utf-8") as log:
        return job, subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode


def load_results(out: Path, plan: Plan) -> dict[str, dict[str, list]]:
    res = {}
    for job in plan.jobs():
        data = json.loads((out / job / "result.json").read_text(encoding="utf-8"))["per_problem"]
        if res and data["doc_id"] != next(iter(res.values()))["doc_id"]:
            raise SystemExit(f"{job}: evaluated on other problems than the base model; rerun it")
        res[job] = data
    return res


def mean_over(runs: list[dict[str, list]], key: str, idx: list[int]) -> float:
    """Mean over runs (seeds) and the problems ``idx`` (a bootstrap resample)."""
    return statistics.fmean(float(r[key][i]) for r in runs for i in idx)


def bootstrap(stat, n: int, plan: Plan) -> tuple[float, float, float]:
    """Point estimate and 95% percentile interval of ``stat(idx)`` over problems resampled with
    replacement; every arm uses the same resample (paired)."""
    import random

    rng = random.Random(plan.bootstrap_seed)
    every = list(range(n))
    draws = sorted(stat([rng.randrange(n) for _ in every]) for _ in range(plan.bootstrap))
    return stat(every), draws[int(0.025 * len(draws))], draws[int(0.975 * len(draws)) - 1]


def claims(res: dict[str, dict[str, list]], plan: Plan) -> dict[str, dict]:
    n = len(res["base"]["doc_id"])
    arm = {r: [res[f"{r}_s{s}"] for s in plan.seeds] for r in plan.rewards}
    base = [res["base"]]

    def rel_tse(a, b):
        def change(idx):
            new, old = mean_over(a, "tse", idx), mean_over(b, "tse", idx)
            return new / old - 1 if old else (0.0 if new == 0 else math.inf)  # a resample with no TSE at all
        return change

    def diff(a, b, key):
        return lambda idx: mean_over(a, key, idx) - mean_over(b, key, idx)

    a = {"tse_change": bootstrap(rel_tse(arm["tse"], base), n, plan),
         "final_change": bootstrap(diff(arm["tse"], base, "final"), n, plan)}
    a["holds"] = a["tse_change"][0] <= -plan.tse_drop and a["final_change"][0] >= 0
    b = {"final_change": bootstrap(diff(arm["accuracy+tse"], arm["accuracy"], "final"), n, plan),
         "tse_change": bootstrap(rel_tse(arm["accuracy+tse"], arm["accuracy"]), n, plan)}
    b["holds"] = b["final_change"][0] >= 0 and b["tse_change"][0] < 0
    return {"a": a, "b": b}


def table(res: dict[str, dict[str, list]], plan: Plan, c: dict[str, dict]) -> str:
    every = list(range(len(res["base"]["doc_id"])))
    vote = plan.eval_args.get("vote", "exp")
    lines = [f"| model | seed | final_pass | {vote} vote | ever_pass | mean TSE (bits) |", "|---|---|---:|---:|---:|---:|"]

    def row(name, seed, runs):
        cells = [f"{mean_over(runs, k, every):.3f}" for k in ("final", "vote", "ever")]
        lines.append(f"| {name} | {seed} | " + " | ".join(cells) + f" | {mean_over(runs, 'tse', every):.4f} |")

    row("testbed (no TCR)", "-", [res["base"]])
    for r in plan.rewards:
        runs = [res[f"{r}_s{s}"] for s in plan.seeds]
        for s, run in zip(plan.seeds, runs):
            row(f"TCR {r}", str(s), [run])
        row(f"**TCR {r}, mean**", "all", runs)

    def ci(t, pct):
        f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{100 * x:+.1f} pt")
        return f"{f(t[0])} (95% CI {f(t[1])} to {f(t[2])})"

    a, b = c["a"], c["b"]
    lines += ["", f"Claim (a), TSE-only vs the testbed: TSE {ci(a['tse_change'], True)}, final-pass "
              f"{ci(a['final_change'], False)}: **{'holds' if a['holds'] else 'does not hold'}** "
              f"(needs TSE <= -{100 * plan.tse_drop:.0f}% and final-pass >= 0).",
              f"Claim (b), accuracy+TSE vs accuracy-only: final-pass {ci(b['final_change'], False)}, TSE "
              f"{ci(b['tse_change'], True)}: **{'holds' if b['holds'] else 'does not hold'}** "
              "(needs final-pass >= 0 and lower TSE)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/tcr_study", help="study folder (resumes what is there)")
    p.add_argument("--parallel", type=int, default=2, help="jobs at a time, one CPU thread each")
    p.add_argument("--quick", action="store_true", help="tiny run of the whole machinery (test suite)")
    p.add_argument("--job", default=None, help=argparse.SUPPRESS)  # internal: run one job
    a = p.parse_args(argv)
    if a.parallel < 1:
        p.error(f"--parallel must be >= 1, got {a.parallel}")
    plan = quick_plan() if a.quick else Plan()
    out = Path(a.out).expanduser().resolve()
    if a.job:
        run_job(a.job, out, plan, a.quick)
        return 0
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    todo = [j for j in plan.jobs() if not (out / j / "result.json").is_file()]
    failed = []
    with tqdm(total=len(plan.jobs()), initial=len(plan.jobs()) - len(todo), desc="tcr study (jobs)") as bar, \
            ThreadPoolExecutor(a.parallel) as pool:
        for fut in as_completed([pool.submit(launch, j, out, a.quick) for j in todo]):
            job, rc = fut.result()
            bar.update(1)
            if rc:
                failed.append(job)
                tqdm.write(f"{job} failed (exit {rc}); its log: {out / job / 'log.txt'}")
    if failed:
        print(f"tcr study: {len(failed)} job(s) failed: {', '.join(failed)}; rerun the command to retry them",
              file=sys.stderr)
        return 1
    res = load_results(out, plan)
    c = claims(res, plan)
    text = table(res, plan, c)
    (out / "study.json").write_text(json.dumps({"plan": asdict(plan), "claims": c, "table": text}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
