"""Fewer forward passes (early stop, parallel decoding) vs accuracy, through the lm-eval backend, in one run.

Runs generate_until on every document of a task (default arith_chain, all 300 evaluation
problems, embedded model) once without early stop and once per policy setting:

- ``--stable K:SHARE[:MIN]``: stop a row once its running vote winner (the backend's vote
  weights over the global step index) has held for K consecutive steps with at least SHARE of
  the weight so far, never before step MIN * steps
  (``early_stop=stable,stop_window=K,stop_share=SHARE,stop_min=MIN``);
- ``--confidence GAP[@MIN]``: the Prophet-style baseline (arXiv 2508.19982): stop a row once
  the mean top-1/top-2 logit gap over its still-masked positions reaches GAP, one number or
  three for the first/middle/last third of the steps, e.g. ``8:5:3``
  (``early_stop=confidence,stop_gap=GAP,stop_min=MIN``).

- ``--parallel TAU``: confidence-threshold parallel decoding (``parallel_threshold=TAU``:
  every masked position of the current block with confidence >= TAU is committed, at least
  one per step). Early stop is refused with it (it needs a fixed schedule).

A stopped row commits its current prediction for every masked position. Savings are the task
metric ``steps_saved``: counted against the forward passes of the exact schedule (the first
row). Reported per
setting: forward passes per sample (the row's denoising steps; a batch runs only its active
rows), the saving against the full schedule, accuracy of the returned answer (exact_match:
the vote over the steps run; also final_pass) and its change, and wall time.

    python benchmarks/early_stop.py [--task arith_chain] [--limit N] [--threads 2] \\
        [--stable 4:0.9,8:0.9,4:0.8:0.5] [--confidence 8:5:3,12,12@0.5] [--model_args k=v,...]

On a real benchmark (LLaDA-8B, GPU): ``--task gsm8k_temporal --model_args
pretrained=GSAI-ML/LLaDA-8B-Instruct,gen_length=256,steps=128,block_length=32 --limit 200``
(the chat template is not applied here; use ``lm_eval ... --model_args ...,early_stop=stable``
for the paper protocol and compare the logged ``steps_run``).

The last line is ``early_stop_best=SETTING saved=S% delta=D`` (the setting with the largest
saving whose exact_match loss is at most 0.5 points; ``none`` if there is none).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _requests import QUICK_GEN, model_args, score, set_threads, task_requests  # noqa: E402  (run as a script)

from lm_eval_temporal import trace


def settings(stable: str, confidence: str, parallel: str = "") -> list[tuple[str, dict]]:
    out = []
    for spec in filter(None, stable.split(",")):
        k, share, *first = spec.split(":")
        name = f"stable k={k} share={share}" + (f" min={first[0]}" if first else "")
        out.append((name, {"early_stop": "stable", "stop_window": k, "stop_share": share, "stop_min": (first or ["0"])[0]}))
    for spec in filter(None, confidence.split(",")):
        gap, _, first = spec.partition("@")
        name = f"confidence gap={gap}" + (f" min={first}" if first else "")
        out.append((name, {"early_stop": "confidence", "stop_gap": gap, "stop_min": first or "0"}))
    for tau in filter(None, parallel.split(",")):
        out.append((f"parallel tau={tau}", {"parallel_threshold": tau}))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="arith_chain")
    p.add_argument("--limit", type=int, default=None, help="first N documents (default: all)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--stable", default="2:0.9,4:0.9,8:0.9,8:0.8,12:0.9,4:0.8:0.5,4:0.9:0.5",
                   help="K:SHARE[:MIN],...")
    p.add_argument("--confidence", default="8:5:3,10,11,12,13:11:9,12@0.5",
                   help="GAP[@MIN] or HIGH:MID:LOW[@MIN], ...")
    p.add_argument("--parallel", default="",
                   help="confidence-threshold parallel decoding: TAU,...")
    p.add_argument("--model_args", default="", help="extra llada_temporal model args, k=v,k=v")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite (short generations)")
    a = p.parse_args()
    extra = model_args(a.model_args)
    if a.quick:
        a.limit, a.batch_size, a.stable, a.confidence, a.parallel = 4, 4, "2:0.9", "3", "0.9"
        extra = {**QUICK_GEN, **extra}
    threads = set_threads(a.threads)
    from lm_eval_temporal.backend import LLaDATemporalLM
    from lm_eval_temporal.options import parse_options
    from lm_eval_temporal.pipeline import TemporalPipeline

    reqs = task_requests(a.task, a.limit)
    lm = LLaDATemporalLM(batch_size=a.batch_size, **extra)
    lm.generate_until(reqs[: min(len(reqs), a.batch_size)], disable_tqdm=True)  # warm-up
    rows = []
    for name, kw in [("none (full schedule)", {})] + settings(a.stable, a.confidence, a.parallel):
        if "parallel_threshold" in kw:  # a sampler setting: its own backend (the weights load again)
            run = LLaDATemporalLM(batch_size=a.batch_size, **{**extra, **kw})
        else:  # one copy of the weights; each setting is its own pipeline (options checked as model args)
            run = lm
            lm.pipeline = TemporalPipeline(lm.loaded, parse_options({**extra, **kw}).temporal)
        t = time.perf_counter()
        responses = run.generate_until(reqs, disable_tqdm=True)
        wall = time.perf_counter() - t
        metrics = score(reqs, responses)
        records = [trace.split(r)[1] for r in responses]
        steps = [r.steps_run for r in records]
        rows.append({
            "name": name,
            "passes": statistics.mean(steps),
            "saved": statistics.mean(m["steps_saved"] for m in metrics),
            "ever": 100 * statistics.mean(m["ever_pass"] for m in metrics),
            "tse": statistics.mean(m["tse"] for m in metrics),
            "em": 100 * statistics.mean(m["exact_match"] for m in metrics),
            "final": 100 * statistics.mean(m["final_pass"] for m in metrics),
            "wall": wall,
        })
    ref = rows[0]
    print(f"task={a.task} docs={len(reqs)} batch_size={a.batch_size} threads={threads} "
          f"steps={ref['passes']:.0f} vote={lm.pipeline.config.vote} model={lm.loaded.name}")
    print("| policy | forward passes / sample | saved | exact_match (vote) | Δ | final_pass | Δ | ever_pass | TSE | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['name']} | {r['passes']:.1f} | {r['saved']:.1%} | {r['em']:.2f} | {r['em'] - ref['em']:+.2f} "
              f"| {r['final']:.2f} | {r['final'] - ref['final']:+.2f} | {r['ever']:.2f} | {r['tse']:.4f} | {r['wall']:.1f} |")
    ok = [r for r in rows[1:] if r["em"] - ref["em"] >= -0.5]
    best = max(ok, key=lambda r: r["saved"], default=None)
    if best is None:
        print("early_stop_best=none saved=0.0% delta=+0.00")
    else:
        print(f"early_stop_best={best['name'].replace(' ', ',')} saved={best['saved']:.1%} delta={best['em'] - ref['em']:+.2f}")


if __name__ == "__main__":
    main()
