"""Scoring fidelity: the package's two answer protocols on real LLaDA-8B-Instruct generations.

Reads d1's published generations (gen_length 256, 128 steps; see the data README) from
``<data>/llada_generations/`` and prints, per task, the accuracy of
``lm_eval_temporal.answers.is_correct`` with ``protocol="default"`` (this package's rules) next
to ``protocol="paper"`` (the official rules of d1 and "Time Is a Feature", quirks included;
:mod:`lm_eval_temporal.answers.paper`) and the figures reported for these files, which the paper
protocol reproduces exactly. ``--details`` lists every item on which the two protocols disagree.

    python benchmarks/scoring_fidelity.py [--data DIR] [--details]

``DIR`` defaults to ``$LM_EVAL_TEMPORAL_DATA``, else ``../shared/data`` next to the checkout.
The last two lines are ``fidelity_paper gsm8k=A math500=B countdown=C`` and
``fidelity gsm8k=A math500=B countdown=C`` (accuracies in percent, paper and default protocol).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lm_eval_temporal import answers  # noqa: E402

DATA_ENV = "LM_EVAL_TEMPORAL_DATA"
# Reported for these files (d1; the official scorer of "Time Is a Feature" gives the same).
REPORTED = {"gsm8k": 76.37, "math500": 32.40, "countdown": 19.53}
FILE_GLOB = "{task}_instruct_256_128_*_generations.json"


def default_data_dir() -> Path:
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else (REPO.parent / "shared" / "data")


def generation_files(data_dir: Path, task: str) -> list[Path]:
    folder = Path(data_dir) / "llada_generations"
    files = sorted(Path(p) for p in glob.glob(str(folder / FILE_GLOB.format(task=task))))
    if not files:
        raise FileNotFoundError(
            f"no {FILE_GLOB.format(task=task)} in {folder}; pass --data DIR or set {DATA_ENV} to a "
            "folder laid out like ../shared/data (with llada_generations/)"
        )
    return files


def load_items(data_dir: Path, task: str) -> list[dict[str, Any]]:
    items = []
    for path in generation_files(data_dir, task):
        with path.open(encoding="utf-8") as f:
            for i, g in enumerate(json.load(f)["generations"]):
                items.append({"id": f"{path.name.split('_instruct')[0]}/{path.name.split('_')[4]}#{i}",
                              "text": g["generations"], "gold": g["ground_truth"], "question": g.get("question", "")})
    return items


# ----------------------------------------------------------------------------- comparison


@dataclass
class TaskResult:
    task: str
    n: int = 0
    default: int = 0
    paper: int = 0
    only_default: list[dict[str, Any]] = field(default_factory=list)
    only_paper: list[dict[str, Any]] = field(default_factory=list)

    def pct(self, k: int) -> float:
        return 100.0 * k / self.n if self.n else 0.0


def score_task(data_dir: Path, task: str) -> TaskResult:
    res = TaskResult(task)
    for item in load_items(data_dir, task):
        default = answers.is_correct(item["text"], item["gold"], task)
        paper = answers.is_correct(item["text"], item["gold"], task, protocol="paper")
        res.n += 1
        res.default += default
        res.paper += paper
        if default != paper:
            row = {"id": item["id"], "extracted": answers.extract_answer(item["text"], task),
                   "paper_extracted": answers.extract_answer(item["text"], task, protocol="paper"),
                   "gold": item["gold"]}
            (res.only_default if default else res.only_paper).append(row)
    return res


def score(data_dir: Path | None = None) -> dict[str, TaskResult]:
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    return {task: score_task(data_dir, task) for task in REPORTED}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help=f"folder with llada_generations/ (default: ${DATA_ENV}, else ../shared/data)")
    ap.add_argument("--details", action="store_true", help="list the items where the two protocols disagree")
    args = ap.parse_args(argv)
    data_dir = args.data or default_data_dir()
    try:
        results = score(data_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'task':<10} {'n':>5} {'default':>8} {'paper':>8} {'reported':>9} {'default-only':>13} {'paper-only':>11}")
    for task, r in results.items():
        print(f"{task:<10} {r.n:>5} {r.pct(r.default):>7.2f}% {r.pct(r.paper):>7.2f}% {REPORTED[task]:>8.2f}% "
              f"{len(r.only_default):>13} {len(r.only_paper):>11}")
    if args.details:
        for task, r in results.items():
            for label, rows in (("correct by default only", r.only_default), ("correct by paper only", r.only_paper)):
                for row in rows:
                    print(f"[{task}] {label}: {row['id']} default={row['extracted']!r} "
                          f"paper={row['paper_extracted']!r} gold={row['gold']!r}")
    print("fidelity_paper " + " ".join(f"{t}={r.pct(r.paper):.2f}" for t, r in results.items()))
    print("fidelity " + " ".join(f"{t}={r.pct(r.default):.2f}" for t, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
