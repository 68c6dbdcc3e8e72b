"""Cost of the temporal machinery in the backend, measured side by side in one run.

A: generate_until with everything on (capture every step, decode and parse every step,
vote, TSE, per-sample trace). B: the same requests with none of it (vote=none, unmarked
documents: plain denoising). Runs alternate A/B and the ratio of medians is reported.

    python benchmarks/voting_overhead.py [--task arith_chain --limit 64 --repeats 5]

The last line is ``overhead_ratio=R`` (A / B wall time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _requests import task_requests, unmarked  # noqa: E402  (run as a script)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="arith_chain")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--model_args", default="", help="extra llada_temporal model args, k=v,k=v")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    a = p.parse_args()
    if a.quick:
        a.limit, a.repeats, a.batch_size = 4, 1, 4
    from lm_eval.utils import simple_parse_args_string

    from lm_eval_temporal.backend import LLaDATemporalLM

    extra = simple_parse_args_string(a.model_args) if a.model_args else {}
    full = LLaDATemporalLM(batch_size=a.batch_size, **extra)
    plain = LLaDATemporalLM(batch_size=a.batch_size, **{**extra, "vote": "none"})
    plain.lm = full.lm  # one copy of the weights: identical forward passes
    reqs = task_requests(a.task, a.limit)
    base = unmarked(reqs)
    torch.manual_seed(0)
    full.generate_until(reqs[: a.batch_size], disable_tqdm=True)  # warm-up
    times_a, times_b = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        full.generate_until(reqs, disable_tqdm=True)
        times_a.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain.generate_until(base, disable_tqdm=True)
        times_b.append(time.perf_counter() - t)
    ma, mb = statistics.median(times_a), statistics.median(times_b)
    print(f"task={a.task} requests={len(reqs)} batch_size={a.batch_size} repeats={a.repeats} threads={torch.get_num_threads()}")
    print(f"temporal (capture+decode+parse+vote+TSE): median {ma:.3f}s  runs {[round(x, 3) for x in times_a]}")
    print(f"plain denoising:                           median {mb:.3f}s  runs {[round(x, 3) for x in times_b]}")
    print(f"overhead_ratio={ma / mb:.4f}")


if __name__ == "__main__":
    main()
