"""When does temporal voting help? final answer vs fixed / linear / exp / gated votes, per model
strength and difficulty level, from one generation pass per model.

Each model decodes every document once through the lm-eval backend with
``trajectory_path=`` (every step's answer is recorded); all votes are then computed offline
from those per-step answers with the package's own functions (``temporal.vote``,
``temporal.gated_vote``, numeric-equivalence clusters) and scored with the task's matcher.

    python benchmarks/voting_regimes.py --models embedded,/path/to/weaker_checkpoint \\
        [--labels final,weak] [--task arith_chain] [--limit N] [--threads 2] [--out_dir DIR]
    python benchmarks/voting_regimes.py --trajectories run_a.jsonl run_b.jsonl   # no generation

The second form reads trajectory files written by any ``lm_eval --model llada_temporal
--model_args ...,trajectory_path=FILE`` run, e.g. LLaDA-8B on gsm8k_temporal / math500 /
svamp / countdown, so the same table can be made for real benchmarks. Rows are split by the
document's ``level`` field when the task has one (arith_chain: number of operations).

Gated vote (``vote=gated``): keep the final answer when its cluster holds at least ``q`` of
the (exp, alpha 5) weight of the last ``k`` steps, else the exp vote; ``--gate k:q,...``
(the first one is the table's "gated" column, the others are listed below it).

The last line is ``vote_gain_vs_final=fixed:+F,linear:+L,exp:+E,gated:+G`` (accuracy change
in points against the final answer, averaged over the models).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from _requests import QUICK_GEN, model_args, set_threads, task_requests  # noqa: E402  (run as a script)

from lm_eval_temporal import answers, metrics, temporal
from lm_eval_temporal.record import TemporalRecord

METHODS = ("final", "fixed", "linear", "exp", "gated")


def generate(label: str, pretrained: str, a, extra: dict, out_dir: Path) -> Path:
    from lm_eval_temporal.backend import LLaDATemporalLM

    path = out_dir / f"{label}.jsonl"
    path.unlink(missing_ok=True)
    reqs = task_requests(a.task, a.limit)
    lm = LLaDATemporalLM(pretrained=pretrained, batch_size=a.batch_size, trajectory_path=str(path), **extra)
    lm.generate_until(reqs, disable_tqdm=True)
    return path


def levels_of(task: str) -> dict[int, object]:
    """doc_id -> the document's ``level`` (empty when the task has none)."""
    try:
        reqs = task_requests(task, None)
    except Exception:  # noqa: BLE001 - a task lm-eval cannot build here: no levels
        return {}
    return {r.doc_id: r.doc["level"] for r in reqs if isinstance(r.doc, dict) and "level" in r.doc}


def answers_of(rec: TemporalRecord, gates: list[tuple[int, float]], alpha: float) -> dict[str, str | None]:
    steps = rec.answers
    eq = answers.equivalence(rec.answer_task)
    out = {"final": rec.final}
    for w in ("fixed", "linear", "exp"):
        out[w] = temporal.vote(steps, weighting=w, alpha=alpha, equivalent=eq).answer
    for i, (k, q) in enumerate(gates):
        g = temporal.gated_vote(steps, window=k, share=q, alpha=alpha, equivalent=eq)
        out["gated" if i == 0 else f"gated k={k} q={q}"] = g.answer
    return out


def evaluate(path: Path, gates: list[tuple[int, float]], alpha: float) -> tuple[dict, dict]:
    """Per group ("all", "level N"): n, ever-pass and accuracy per method (percent), plus the
    paired counts (method right & final wrong, method wrong & final right)."""
    recs = [TemporalRecord.from_json(json.loads(x), f"{path}:{i}")
            for i, x in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if x.strip()]
    levels = levels_of(recs[0].task) if recs else {}
    ok = defaultdict(lambda: defaultdict(list))
    for rec in recs:
        s = metrics.score(rec, rec.gold)
        chosen = answers_of(rec, gates, alpha)
        groups = ["all"] + ([f"level {levels[rec.doc_id]}"] if rec.doc_id in levels else [])
        for g in groups:
            ok[g]["ever"].append(s.ever_pass)
            for m, ans in chosen.items():
                ok[g][m].append(ans is not None and s.correct[ans])
    table, paired = {}, {}
    for g, cols in sorted(ok.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        table[g] = {"n": len(cols["final"]), **{m: 100 * statistics.mean(v) for m, v in cols.items()}}
        paired[g] = {m: (sum(x and not f for x, f in zip(v, cols["final"])), sum(f and not x for x, f in zip(v, cols["final"])))
                     for m, v in cols.items() if m not in ("final", "ever")}
    return table, paired


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="embedded", help="comma-separated checkpoints ('embedded' = the shipped one)")
    p.add_argument("--labels", default=None, help="comma-separated names for --models (default: derived)")
    p.add_argument("--trajectories", nargs="*", default=None, help="score these trajectory files instead of generating")
    p.add_argument("--task", default="arith_chain")
    p.add_argument("--limit", type=int, default=None, help="first N documents (default: all)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--alpha", type=float, default=5.0, help="exp weighting alpha (also the gated vote's)")
    p.add_argument("--gate", default="8:0.9,4:1.0,8:0.75,16:0.9", help="gated vote window:share, ...")
    p.add_argument("--out_dir", default="out/voting_regimes", help="where generated trajectory files go")
    p.add_argument("--model_args", default="", help="extra llada_temporal model args for every model, k=v,k=v")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite (short generations)")
    a = p.parse_args()
    extra = model_args(a.model_args)
    if a.quick:
        a.limit, a.batch_size = 4, 4
        extra = {**QUICK_GEN, **extra}
    gates = [(int(k), float(q)) for k, q in (s.split(":") for s in a.gate.split(","))]
    if a.trajectories:
        runs = [(Path(f).stem, Path(f)) for f in a.trajectories]
    else:
        set_threads(a.threads)
        if not any(k in extra for k in ("gen_length", "steps", "block_length")):
            # Every model decodes with the embedded model's settings (a checkpoint path would
            # otherwise get the task's generic ones).
            from lm_eval_temporal.tiny import DEFAULT_GEN

            extra = {**DEFAULT_GEN, **extra}
        models = a.models.split(",")
        labels = a.labels.split(",") if a.labels else [Path(m).name or m for m in models]
        out_dir = Path(a.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs = [(lab, generate(lab, m, a, extra, out_dir)) for lab, m in zip(labels, models)]
    gains = defaultdict(list)
    print(f"task={a.task} alpha={a.alpha} gated: k={gates[0][0]} q={gates[0][1]} (keep the final answer when its "
          "cluster holds >= q of the exp weight of the last k steps, else exp vote)")
    print("| model | docs | n | final | ever | fixed | linear | exp | gated |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    extras = []
    for label, path in runs:
        table, paired = evaluate(path, gates, a.alpha)
        for g, row in table.items():
            cells = [f"{row['final']:.1f}", f"{row['ever']:.1f}"] + [
                f"{row[m]:.1f} ({row[m] - row['final']:+.1f})" for m in METHODS[1:]
            ]
            print(f"| {label} | {g} | {row['n']} | " + " | ".join(cells) + " |")
        allrow = table.get("all", {})
        for m in METHODS[1:]:
            gains[m].append(allrow[m] - allrow["final"])
        for m, row_val in allrow.items():
            if m.startswith("gated k="):
                extras.append(f"{label}: {m}: {row_val:.1f} ({row_val - allrow['final']:+.1f})")
        extras.append(f"{label}: paired vs final (method right & final wrong / method wrong & final right): "
                      + ", ".join(f"{m} {w}/{l}" for m, (w, l) in paired["all"].items()))
    for line in extras:
        print(line)
    print("vote_gain_vs_final=" + ",".join(f"{m}:{statistics.mean(v):+.2f}" for m, v in gains.items()))


if __name__ == "__main__":
    main()
