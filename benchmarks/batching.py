"""Batched generate_until vs one request at a time (what LLaDA's official lm-eval
integration does), same requests, outputs checked identical, measured in one run.

    python benchmarks/batching.py [--task arith_chain --limit 64]

Reports batch sizes 1/4/8/16; the last line is ``speedup_batch8=S`` (time at batch 1 /
time at batch 8).
"""

from __future__ import annotations

import argparse
import time

import torch

from _requests import task_requests  # noqa: E402  (run as a script)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="arith_chain")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--sizes", default="1,4,8,16")
    p.add_argument("--model_args", default="", help="extra llada_temporal model args, k=v,k=v")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    if a.quick:
        a.limit, sizes = 8, [1, 8]
    if 1 not in sizes or 8 not in sizes:
        p.error("--sizes must include 1 and 8")
    from lm_eval.utils import simple_parse_args_string

    from lm_eval_temporal.backend import LLaDATemporalLM

    extra = simple_parse_args_string(a.model_args) if a.model_args else {}
    lm = LLaDATemporalLM(**extra)
    reqs = task_requests(a.task, a.limit)
    lm.generate_until(reqs[:2], disable_tqdm=True)  # warm-up
    outputs, times = {}, {}
    for bs in sizes:
        lm.opts = lm.opts.__class__(**{**lm.opts.__dict__, "batch_size": bs})
        t = time.perf_counter()
        outputs[bs] = lm.generate_until(reqs, disable_tqdm=True)
        times[bs] = time.perf_counter() - t
    print(f"task={a.task} requests={len(reqs)} threads={torch.get_num_threads()}")
    for bs in sizes:
        same = outputs[bs] == outputs[1]
        print(f"batch_size={bs:<3d} {times[bs]:8.3f}s  {len(reqs) / times[bs]:7.2f} req/s  speedup {times[1] / times[bs]:5.2f}x  identical_to_bs1={same}")
        if not same:
            raise SystemExit(f"batch_size={bs} changed outputs: batching must not change a row's result")
    print(f"speedup_batch8={times[1] / times[8]:.3f}")


if __name__ == "__main__":
    main()
