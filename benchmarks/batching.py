"""Batched generate_until vs one request at a time (what LLaDA's official lm-eval
integration does), same requests, outputs checked identical, measured in one run.

    python benchmarks/batching.py [--task arith_chain --limit 64 --threads 2]

Every batch size runs with the same torch thread setting (``--threads``; default torch's).

Reports batch sizes 1/4/8/16 (median over ``--repeats`` interleaved runs), then the
*ceiling* any batching can reach on this machine: the model's forward pass alone, per row, at
each batch size, on a canvas of the requests' median prompt length plus gen_length
(``forward_only_speedup_batch8=F``). The last line is ``speedup_batch8=S`` (generate_until
time at batch 1 / time at batch 8).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _requests import QUICK_GEN, model_args, set_threads, task_requests  # noqa: E402  (run as a script)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="arith_chain")
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--sizes", default="1,4,8,16")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians are reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--model_args", default="", help="extra llada_temporal model args, k=v,k=v")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite (short generations)")
    a = p.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    if a.quick:
        a.limit, sizes, a.repeats = 8, [1, 8], 1
    if 1 not in sizes or 8 not in sizes:
        p.error("--sizes must include 1 and 8")
    threads = set_threads(a.threads)
    from lm_eval_temporal.backend import LLaDATemporalLM

    extra = model_args(a.model_args)
    if a.quick:
        extra = {**QUICK_GEN, **extra}
    lm = LLaDATemporalLM(**extra)
    reqs = task_requests(a.task, a.limit)
    lm.generate_until(reqs[:2], disable_tqdm=True)  # warm-up
    outputs, runs = {}, {bs: [] for bs in sizes}
    for r in range(a.repeats):
        # Rotate the order of the sizes between repeats, so drift in machine load is shared.
        for bs in sizes[r % len(sizes):] + sizes[: r % len(sizes)]:
            lm.batch_size = bs
            t = time.perf_counter()
            outputs[bs] = lm.generate_until(reqs, disable_tqdm=True)
            runs[bs].append(time.perf_counter() - t)
    times = {bs: statistics.median(v) for bs, v in runs.items()}
    print(f"task={a.task} requests={len(reqs)} threads={threads} repeats={a.repeats} device={lm.loaded.device}")
    for bs in sizes:
        same = outputs[bs] == outputs[1]
        print(f"batch_size={bs:<3d} {times[bs]:8.3f}s  {len(reqs) / times[bs]:7.2f} req/s  speedup {times[1] / times[bs]:5.2f}x  identical_to_bs1={same}")
        if not same:
            raise SystemExit(f"batch_size={bs} changed outputs: batching must not change a row's result")
    per_row = forward_per_row(lm, reqs, sizes)
    for bs in sizes:
        print(f"forward only: batch_size={bs:<3d} {per_row[bs] * 1e3:7.3f} ms/row  speedup {per_row[1] / per_row[bs]:5.2f}x")
    print(f"forward_only_speedup_batch8={per_row[1] / per_row[8]:.3f}")
    print(f"speedup_batch8={times[1] / times[8]:.3f}")


def forward_per_row(lm, reqs, sizes: list[int], passes: int = 20) -> dict[int, float]:
    """Seconds per row of one forward pass at each batch size (median of interleaved runs)."""
    lengths = sorted(len(lm.tok_encode(r.args[0])) for r in reqs)
    gen = lm.resolve_generation(dict(reqs[0].args[1] or {}))
    L = lengths[len(lengths) // 2] + gen.gen_length
    model, device = lm.loaded.model, lm.loaded.device
    runs = {bs: [] for bs in sizes}
    with torch.inference_mode():
        for r in range(3):
            for bs in sizes[r % len(sizes):] + sizes[: r % len(sizes)]:
                x = torch.full((bs, L), lm.loaded.mask_id, dtype=torch.long, device=device)
                model(input_ids=x)  # warm-up for this shape
                t = time.perf_counter()
                for _ in range(passes):
                    model(input_ids=x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                runs[bs].append((time.perf_counter() - t) / (passes * bs))
    return {bs: statistics.median(v) for bs, v in runs.items()}


if __name__ == "__main__":
    main()
