"""TCR at LLaDA-8B's shapes on one GPU: peak memory and seconds per optimiser step, per estimator.

Builds a randomly initialised LLaDA-8B-shaped model on the device (no download: d_model 4096,
32 layers, 32 heads, MLP 12288, vocabulary 126464; bf16), adds the TCR LoRA (r=128 on every
projection of the blocks, as ``examples/tcr_llada8b.yaml``), enables gradient checkpointing,
samples one rollout group (6 completions of 256 tokens, 128 steps, blocks of 32, temperature
0.9, after a ~128-token prompt) with the package's sampler, then for each estimator runs TCR
optimiser steps through the trainer's own pieces (``tcr.policy`` log-probs, ``tcr.loss``):
a reference pass with the adapter disabled, the live pass with gradients, the clipped loss
with the KL term, backward, gradient clipping and AdamW under bf16 autocast. The first step
is a warm-up; the second is timed. Peak memory is ``torch.cuda.max_memory_allocated`` over
an estimator's steps (the weights included).

    python benchmarks/tcr_gpu.py                      # GPU, both estimators, about 2 minutes on an H200
    python benchmarks/tcr_gpu.py --quick --threads 1  # the same code path, tiny shapes, CPU, seconds

The last line is ``tcr_gpu_step_s=one_step:S,trajectory:S peak_gb=one_step:M,trajectory:M``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from _models import random_llada  # noqa: E402  (the benchmarks folder, on the path as the script's own)

QUICK = dict(d_model=64, n_layers=2, n_heads=4, mlp=128, vocab=512, prompt_length=16, gen_length=16, steps=8,
             block_length=8, lora_r=4)


def build(a: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    from peft import LoraConfig, get_peft_model

    from lm_eval_temporal.tcr.config import LORA_TARGETS
    from lm_eval_temporal.tcr.trainer import lora_target_regex

    model = random_llada(d_model=a.d_model, n_heads=a.n_heads, n_layers=a.n_layers, mlp_hidden_size=a.mlp,
                         vocab=a.vocab, device=device, dtype=dtype)  # built in its dtype: no float32 copy of 8B weights
    cfg = model.config
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lcfg = LoraConfig(r=a.lora_r, lora_alpha=a.lora_r / 2, lora_dropout=0.05,
                      target_modules=lora_target_regex(LORA_TARGETS), bias="none")
    return get_peft_model(model, lcfg), cfg


def peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB -> GiB (process RSS)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes on the CPU, for the test suite")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--estimators", default="one_step,trajectory")
    p.add_argument("--trajectory_steps", type=int, default=4)
    p.add_argument("--completions", type=int, default=6)
    p.add_argument("--prompt_length", type=int, default=128)
    p.add_argument("--gen_length", type=int, default=256)
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--block_length", type=int, default=32)
    p.add_argument("--logprob_batch_size", type=int, default=None, help="rows (trajectory: row-step pairs) per forward")
    p.add_argument("--lora_r", type=int, default=128)
    p.add_argument("--d_model", type=int, default=4096)
    p.add_argument("--n_layers", type=int, default=32)
    p.add_argument("--n_heads", type=int, default=32)
    p.add_argument("--mlp", type=int, default=12288)
    p.add_argument("--vocab", type=int, default=126464)
    a = p.parse_args()
    if a.quick:
        vars(a).update(QUICK)
    if a.threads:
        torch.set_num_threads(a.threads)
    on_gpu = torch.cuda.is_available() and not a.quick
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_gpu else contextlib.nullcontext

    from lm_eval_temporal.sampler import generate
    from lm_eval_temporal.tcr.advantages import group_advantages
    from lm_eval_temporal.tcr.loss import completion_mask, grpo_loss
    from lm_eval_temporal.tcr.policy import rollout_logprobs, token_weights

    t0 = time.monotonic()
    policy, cfg = build(a, device, dtype)
    sync(device)
    trainable = [q for q in policy.parameters() if q.requires_grad]
    print(f"device={device} dtype={dtype} params={sum(q.numel() for q in policy.parameters()) / 1e9:.2f}B "
          f"lora={sum(q.numel() for q in trainable) / 1e6:.1f}M build_s={time.monotonic() - t0:.1f} "
          f"weights_gb={peak_gb(device):.1f}", flush=True)

    # One group: a shared prompt of random ids (no special token), G sampled completions.
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, cfg.bos_token_id, (1, a.prompt_length), generator=g).repeat(a.completions, 1).to(device)
    attn = torch.ones_like(prompt)
    gens = [torch.Generator(device=device).manual_seed(10 + i) for i in range(a.completions)]
    policy.eval()
    t0 = time.monotonic()
    with autocast():
        out = generate(policy, prompt, attn, gen_length=a.gen_length, steps=a.steps, block_length=a.block_length,
                       temperature=0.9, generator=gens, capture=True)
    sync(device)
    comp = out.sequences[:, a.prompt_length:]
    ro = SimpleNamespace(prompt_ids=prompt, prompt_attention=attn, completion_ids=comp, commit_step=out.commit_step,
                         completion_mask=completion_mask(comp, [cfg.eos_token_id]))
    print(f"rollout: {a.completions} x {a.gen_length} tokens, {a.steps} steps, {time.monotonic() - t0:.1f} s", flush=True)
    adv = group_advantages(torch.randn(a.completions, generator=g).tolist(), a.completions).to(device)

    results = {}
    for est in a.estimators.split(","):
        tcfg = SimpleNamespace(estimator=est, trajectory_steps=a.trajectory_steps, p_mask_prompt=0.15,
                               logprob_batch_size=a.logprob_batch_size)
        opt = torch.optim.AdamW(trainable, lr=3e-6, betas=(0.9, 0.99), weight_decay=0.1)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for it in range(2):  # warm-up, then timed
            seeds = [1000 * it + i for i in range(a.completions)]
            sync(device)
            t0 = time.monotonic()
            policy.eval()
            with torch.no_grad(), autocast(), policy.disable_adapter():
                ref = rollout_logprobs(policy, ro, seeds, tcfg, mask_id=cfg.mask_token_id, device=device)
            policy.train()
            with autocast():
                logp = rollout_logprobs(policy, ro, seeds, tcfg, mask_id=cfg.mask_token_id, device=device)
                w = token_weights(ro, seeds, tcfg)
                res = grpo_loss(logp, logp.detach(), ref, adv, ro.completion_mask, epsilon=0.5, beta=0.04,
                                weights=None if w is None else w.to(device))
            res.loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 0.2)
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync(device)
            times.append(time.monotonic() - t0)
        rows = a.completions * (a.trajectory_steps if est == "trajectory" else 1)
        results[est] = (times[-1], peak_gb(device))
        print(f"estimator={est} rows_per_pass={rows} warmup_s={times[0]:.2f} step_s={times[-1]:.2f} "
              f"peak_gb={results[est][1]:.1f} loss={float(res.loss.detach()):.4f} tokens={res.tokens}", flush=True)
        del opt
    print("tcr_gpu_step_s=" + ",".join(f"{k}:{v[0]:.2f}" for k, v in results.items())
          + " peak_gb=" + ",".join(f"{k}:{v[1]:.1f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
