"""Cost of the temporal machinery in the backend, measured side by side in one run.

A: generate_until with everything on (capture every step, decode and parse every step,
vote, TSE, per-sample trace). B: the same requests with none of it (vote=none, unmarked
documents: plain denoising). Both arms share one copy of the weights and the same thread
setting; repeats are interleaved, alternating which arm goes first, so drift in machine load
hits both alike; the ratio of medians is reported. The CPU time spent after the forward
passes (decode, parse, vote, TSE, trace) is also timed per arm.

    python benchmarks/voting_overhead.py [--task arith_chain --limit 64 --repeats 5 --threads 2]

The last line is ``overhead_ratio=R`` (A / B wall time).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from _requests import QUICK_GEN, model_args, set_threads, task_requests, unmarked  # noqa: E402  (run as a script)


def _timed(obj, name: str, sink: list[float]) -> None:
    """Accumulate the wall time of ``obj.<name>`` into ``sink[-1]``."""
    inner = getattr(obj, name)

    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return inner(*a, **kw)
        finally:
            sink[-1] += time.perf_counter() - t

    setattr(obj, name, wrapper)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="arith_chain")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for both arms (default: torch's)")
    p.add_argument("--model_args", default="", help="extra llada_temporal model args, k=v,k=v")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite (short generations)")
    a = p.parse_args()
    if a.quick:
        a.limit, a.repeats, a.batch_size = 4, 1, 4
    threads = set_threads(a.threads)
    import torch

    from lm_eval_temporal.backend import LLaDATemporalLM
    from lm_eval_temporal.pipeline import TemporalPipeline

    extra = model_args(a.model_args)
    if a.quick:
        extra = {**QUICK_GEN, **extra}
    lm = LLaDATemporalLM(batch_size=a.batch_size, **{**extra, "trajectory_path": None})
    # One model, one copy of the weights (identical forward passes); the arms differ in the
    # pipeline only.
    pipes = {"A": lm.pipeline, "B": TemporalPipeline(lm.loaded, dataclasses.replace(lm.pipeline.config, vote="none"))}
    reqs = task_requests(a.task, a.limit)
    base = unmarked(reqs)
    post = {"A": [], "B": []}
    for arm, pipe in pipes.items():
        _timed(pipe, "finish", post[arm])
        _timed(pipe, "final_texts", post[arm])
    torch.manual_seed(0)
    for arm, rq in (("A", reqs), ("B", base)):  # warm-up
        post[arm].append(0.0)
        lm.pipeline = pipes[arm]
        lm.generate_until(rq[: a.batch_size], disable_tqdm=True)
    times = {"A": [], "B": []}
    post["A"].clear(), post["B"].clear()
    for r in range(a.repeats):
        order = (("A", reqs), ("B", base))
        for arm, rq in order if r % 2 == 0 else order[::-1]:
            post[arm].append(0.0)
            lm.pipeline = pipes[arm]
            t = time.perf_counter()
            lm.generate_until(rq, disable_tqdm=True)
            times[arm].append(time.perf_counter() - t)
    ma, mb = statistics.median(times["A"]), statistics.median(times["B"])
    pa, pb = statistics.median(post["A"]), statistics.median(post["B"])
    n = len(reqs)
    print(f"task={a.task} requests={n} batch_size={a.batch_size} repeats={a.repeats} threads={threads} "
          f"overlap={lm.opts.overlap} device={lm.loaded.device}")
    print(f"A temporal (capture+decode+parse+vote+TSE+trace): median {ma:.3f}s  min {min(times['A']):.3f}s  "
          f"runs {[round(x, 3) for x in times['A']]}")
    print(f"B plain denoising:                                median {mb:.3f}s  min {min(times['B']):.3f}s  "
          f"runs {[round(x, 3) for x in times['B']]}")
    print(f"post-processing after the forward passes (median per run): A {pa * 1e3:.1f} ms "
          f"({pa / n * 1e3:.2f} ms/request), B {pb * 1e3:.1f} ms; A's share of its run: {pa / ma:.2%}")
    print(f"overhead_ratio_min={min(times['A']) / min(times['B']):.4f}")
    print(f"overhead_ratio={ma / mb:.4f}")


if __name__ == "__main__":
    main()
