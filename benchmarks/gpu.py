"""One GPU check of decoding speed at LLaDA-8B shape (random weights built on the device, no
download; torch + transformers + this package only, no lm-eval), in under 5 minutes on one
H100/H200-class GPU:

- forward alone (canvas = prompt + 256, ``logits_to_keep=256``): ms per row and TFLOP/s at
  batch 1 / 8 / 32 / 64;
- ``generate`` (gen_length 256, block 32): ms per row per step at batch 1 / 8 / 32, with
  per-step capture on and off;
- at the largest generate batch, the opt-in options: ``prefix_cache`` and ``torch.compile`` of
  the blocks (``compile=true``; the forward's TFLOP/s too), each against exact eager decoding;
- peak memory, and the projected time of a full GSM8K run (1,319 problems, gen_length 256,
  128 steps) at batch 32 with capture, exact and with the options.

Confidence-threshold parallel decoding is not timed here: with random weights no confidence
reaches a threshold, so it would decode one token per step (its savings are measured on the
embedded model in docs/performance.md).

    python benchmarks/gpu.py            # on the GPU machine
    python benchmarks/gpu.py --quick    # the same code path with tiny shapes on a CPU (the test
                                        # suite runs it; the projection is then meaningless)

The last line is ``gsm8k256_projected_min=M``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _models import random_llada  # noqa: E402  (run as a script)

GSM8K_PROBLEMS, GSM8K_STEPS = 1319, 128
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, for the share of peak


def build(quick: bool, device: torch.device, dtype: torch.dtype):
    shape = (dict(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128, vocab=1024) if quick else
             dict(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=12288, vocab=126464))
    model = random_llada(**shape, device=device, dtype=dtype)
    return model, model.config


def forward_flops(cfg, batch: int, length: int, keep: int) -> float:
    """Matmul FLOPs of one forward pass (2 per multiply-add): projections, MLP, attention, head."""
    d, f, n = cfg.d_model, cfg.mlp_hidden_size, cfg.n_layers
    per_token = n * (2 * 4 * d * d + 2 * 3 * d * f)
    attention = n * 2 * 2 * length * length * d
    return batch * (length * per_token + attention + keep * 2 * d * cfg.vocab_size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clock(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up for this shape
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes on the CPU (the test suite's run)")
    p.add_argument("--prompt", type=int, default=160)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (the --quick run)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    from lm_eval_temporal.config import SamplerConfig
    from lm_eval_temporal.sampler import generate

    device = torch.device("cuda" if torch.cuda.is_available() and not a.quick else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, cfg = build(a.quick, device, dtype)
    G, block, steps = (16, 8, 4) if a.quick else (256, 32, 16)
    prompt = 8 if a.quick else a.prompt
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    print(f"device={name} dtype={dtype} d_model={cfg.d_model} layers={cfg.n_layers} vocab={cfg.vocab_size} "
          f"prompt={prompt} gen_length={G} torch={torch.__version__}")

    g = torch.Generator(device="cpu").manual_seed(1)
    rows = {}
    print("| batch | forward ms/row | TFLOP/s | generate ms/row-step (capture) | (no capture) | capture on/off |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in ((1, 2) if a.quick else (1, 8, 32, 64)):
        ids = torch.randint(0, cfg.bos_token_id, (batch, prompt), generator=g).to(device)
        canvas = torch.cat([ids, torch.full((batch, G), cfg.mask_token_id, device=device)], dim=1)
        with torch.inference_mode():
            fwd = clock(lambda: model(input_ids=canvas, logits_to_keep=G), device, a.repeats)
        tflops = forward_flops(cfg, batch, prompt + G, G) / fwd / 1e12
        cells = [f"{fwd / batch * 1e3:.2f}", f"{tflops:.0f}" + (f" ({tflops / peak:.0%} of peak)" if peak else "")]
        if batch <= 32:
            sampler = SamplerConfig(G, steps, block)
            on = clock(lambda: generate(model, ids, config=sampler, capture=True), device, 1) / steps / batch
            off = clock(lambda: generate(model, ids, config=sampler, capture=False), device, 1) / steps / batch
            rows[batch] = on
            cells += [f"{on * 1e3:.2f}", f"{off * 1e3:.2f}", f"{on / off:.4f}"]
        else:
            cells += ["-", "-", "-"]
        print(f"| {batch} | " + " | ".join(cells) + " |")
    from lm_eval_temporal.loading import compile_blocks

    batch = max(rows)
    ids = torch.randint(0, cfg.bos_token_id, (batch, prompt), generator=g).to(device)
    canvas = torch.cat([ids, torch.full((batch, G), cfg.mask_token_id, device=device)], dim=1)
    per_step = {"exact": rows[batch]}
    per_step["prefix_cache"] = clock(lambda: generate(model, ids, config=SamplerConfig(G, steps, block, prefix_cache=True),
                                                      capture=True), device, 1) / steps / batch
    t = time.perf_counter()
    compile_blocks(model)
    with torch.inference_mode():
        fwd = clock(lambda: model(input_ids=canvas, logits_to_keep=G), device, a.repeats)
    compile_s = time.perf_counter() - t
    per_step["compile"] = clock(lambda: generate(model, ids, config=SamplerConfig(G, steps, block), capture=True),
                                device, 1) / steps / batch
    per_step["compile + prefix_cache"] = clock(
        lambda: generate(model, ids, config=SamplerConfig(G, steps, block, prefix_cache=True), capture=True),
        device, 1) / steps / batch
    tflops = forward_flops(cfg, batch, prompt + G, G) / fwd / 1e12
    print(f"compiled forward at batch {batch}: {fwd / batch * 1e3:.2f} ms/row, {tflops:.0f} TFLOP/s"
          + (f" ({tflops / peak:.0%} of peak)" if peak else "") + f"; compile and timing took {compile_s:.0f} s")
    if device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    print(f"| batch {batch}, capture on | ms/row-step | vs exact | projected GSM8K-256 (min) |")
    print("| --- | ---: | ---: | ---: |")
    for name, v in per_step.items():
        print(f"| {name} | {v * 1e3:.2f} | {per_step['exact'] / v:.2f}x | {GSM8K_PROBLEMS * GSM8K_STEPS * v / 60:.1f} |")
    minutes = GSM8K_PROBLEMS * GSM8K_STEPS * per_step["exact"] / 60
    print(f"projected GSM8K (1,319 problems, gen_length 256, 128 steps) at batch {batch} with capture, exact "
          f"eager decoding: {minutes:.1f} min")
    print(f"gsm8k256_projected_min={minutes:.1f}")


if __name__ == "__main__":
    main()
