"""The sampler's own cost per step, next to the forward pass, on a model whose vocabulary-sized
work dominates (LLaDA-8B's 126,464-token vocabulary, d_model 256, 2 layers; random weights):
the CPU proxy for "the sampler step costs a few percent of the forward at batch >= 8".

Measured side by side in one run, interleaved repeats (medians):

- ``forward``: the model alone on the full canvas, ``logits_to_keep=gen_length`` (what a step
  runs), per step;
- ``generate``: ``sampler.generate(capture=True)`` per step, so ``generate / forward - 1`` is
  what the sampler adds (argmax, confidence, top-k, capture);
- the confidence computation on the same logits: a float32 softmax over every position up to
  the end of the current block (the previous code) vs over the current block only (now).

    python benchmarks/sampler_step.py [--batch 8] [--gen_length 128] [--block_length 32] [--threads 2]

The last line is ``sampler_step_overhead=R`` (generate per step / forward per step - 1).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _models import random_llada  # noqa: E402  (run as a script)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--gen_length", type=int, default=128)
    p.add_argument("--block_length", type=int, default=32)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--vocab", type=int, default=126_464)
    p.add_argument("--d_model", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="tiny shapes for the test suite")
    a = p.parse_args()
    if a.quick:
        a.batch, a.prompt, a.gen_length, a.block_length, a.steps, a.vocab, a.d_model, a.layers, a.repeats = \
            2, 8, 16, 8, 4, 512, 32, 1, 1
    if a.threads:
        torch.set_num_threads(a.threads)
    from lm_eval_temporal.config import SamplerConfig
    from lm_eval_temporal.sampler import generate

    model = random_llada(d_model=a.d_model, n_heads=4, n_layers=a.layers, mlp_hidden_size=2 * a.d_model, vocab=a.vocab)
    mask = model.config.mask_token_id
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.bos_token_id, (a.batch, a.prompt), generator=g)
    cfg = SamplerConfig(a.gen_length, a.steps, a.block_length)
    canvas = torch.cat([ids, torch.full((a.batch, a.gen_length), mask)], dim=1)
    G = a.gen_length

    with torch.inference_mode():
        logits = model(input_ids=canvas, logits_to_keep=G).logits  # warm-up, and the logits below
        x0 = logits.argmax(-1)
        b_end = G  # the last block: the most positions the previous code took a softmax over

        def forward():
            model(input_ids=canvas, logits_to_keep=G)

        def sample():
            generate(model, ids, config=cfg, capture=True)

        def old_confidence():
            torch.softmax(logits[:, :b_end].float(), dim=-1).gather(-1, x0[:, :b_end, None])

        def new_confidence():
            start = b_end - a.block_length
            torch.softmax(logits[:, start:b_end].float(), dim=-1).gather(-1, x0[:, start:b_end, None])

        runs = {name: [] for name in ("forward", "generate", "old", "new")}
        for r in range(a.repeats):
            order = [("forward", forward), ("generate", sample), ("old", old_confidence), ("new", new_confidence)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                runs[name].append(timed(fn, 1))
    med = {k: statistics.median(v) for k, v in runs.items()}
    per_step = med["generate"] / a.steps
    print(f"batch={a.batch} prompt={a.prompt} gen_length={G} block_length={a.block_length} steps={a.steps} "
          f"vocab={a.vocab} d_model={a.d_model} layers={a.layers} threads={torch.get_num_threads()}")
    print(f"forward per step {med['forward'] * 1e3:.1f} ms; generate per step {per_step * 1e3:.1f} ms")
    print(f"confidence on the last block's logits: softmax up to the block end {med['old'] * 1e3:.1f} ms, "
          f"current block only {med['new'] * 1e3:.1f} ms ({med['old'] / max(med['new'], 1e-9):.1f}x less)")
    print(f"sampler_step_overhead={per_step / med['forward'] - 1:.4f}")


if __name__ == "__main__":
    main()
