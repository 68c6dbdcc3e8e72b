"""Cost of per-step capture: plain denoising vs denoising with ``capture=True``, same model and
inputs, measured side by side in one run (interleaved repeats, alternating which goes first,
so drift in machine load hits both alike). Outputs are checked identical.

    python benchmarks/capture_overhead.py [--pretrained DIR] [--batch 8] [--repeats 15] [--threads 1]

Also prints the memory of what capture returns (the trajectory and the commit steps),
measured on this run's tensors, and computed from their element sizes for LLaDA-8B settings
(batch 8, 256 steps, 512 generated tokens; not measured there). The last line is
``capture_overhead_ratio=R`` (median time with capture / median time without).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

PROMPTS = ["Q:1+2=?", "Q:12+30-7=?", "Q:9*9", "Tom has 3 apples and buys 4 more.", "Q:2", "Q:100-1", "x", "Q:7+8*2"]


def capture_bytes(out, batch: int, steps: int, gen_length: int) -> int:
    """Bytes of what ``generate(capture=True)`` returned in ``out`` (trajectory [B, steps, G] and
    commit steps [B, G]) for a batch of that shape, from the element sizes of ``out``'s tensors."""
    return (batch * steps * gen_length * out.trajectory.element_size()
            + batch * gen_length * out.commit_step.element_size())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", default=None, help="model dir or hub id (default: the embedded tiny model)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--gen_length", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--block_length", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 keeps timings stable on a shared machine)")
    p.add_argument("--quick", action="store_true", help="tiny run for the test suite")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from lm_eval_temporal.loading import load_model
    from lm_eval_temporal.sampler import generate
    from lm_eval_temporal.tiny import DEFAULT_GEN, EMBEDDED_DIR

    gen = dict(DEFAULT_GEN)
    for key in gen:
        if getattr(a, key) is not None:
            gen[key] = getattr(a, key)
    if a.quick:
        a.repeats, a.batch, gen = 2, 2, dict(gen_length=8, steps=4, block_length=4)
    lm = load_model(a.pretrained or str(EMBEDDED_DIR), device=a.device)
    tok = lm.tokenizer
    tok.padding_side = "left"
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(a.batch)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, attn = enc.input_ids.to(lm.device), enc.attention_mask.to(lm.device)

    def run(capture: bool):
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = generate(lm.model, ids, attn, mask_id=lm.mask_id, capture=capture, **gen)
        seq = out.sequences.cpu()  # waits for the device in both variants
        return time.perf_counter() - t, seq, out

    run(False)  # warm-up
    out = run(True)[2]
    plain, captured = [], []
    for r in range(a.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        for capture in order:
            dt, seq, _ = run(capture)
            (captured if capture else plain).append(dt)
            if capture:
                seq_capture = seq
            else:
                seq_plain = seq
        if not torch.equal(seq_plain, seq_capture):
            raise SystemExit("capture changed the generated tokens")
    t_plain, t_cap = statistics.median(plain), statistics.median(captured)
    ratio = t_cap / t_plain
    print(f"model={lm.name} device={lm.device} dtype={lm.dtype} threads={torch.get_num_threads()}")
    print(f"batch={a.batch} prompt_len={ids.shape[1]} {gen} repeats={a.repeats}")
    print(f"plain    median {t_plain * 1e3:9.2f} ms  (min {min(plain) * 1e3:.2f})")
    print(f"capture  median {t_cap * 1e3:9.2f} ms  (min {min(captured) * 1e3:.2f})  outputs identical: True")
    here = out.trajectory.nbytes + out.commit_step.nbytes
    if here != capture_bytes(out, a.batch, gen["steps"], gen["gen_length"]):
        raise SystemExit(f"capture returned {here} bytes, not what capture_bytes computes for its shape")
    print(f"capture memory here (measured: trajectory {tuple(out.trajectory.shape)} {out.trajectory.dtype}, "
          f"commit steps {tuple(out.commit_step.shape)} {out.commit_step.dtype}): {here} bytes")
    print("capture memory at LLaDA-8B settings (batch 8, 256 steps, 512 tokens; computed from the element sizes "
          f"measured here, not measured): {capture_bytes(out, 8, 256, 512) / 1e6:.2f} MB")
    print(f"capture_overhead_ratio={ratio:.4f}")


if __name__ == "__main__":
    main()
