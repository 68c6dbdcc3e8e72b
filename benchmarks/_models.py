"""Shared by the benchmark scripts that need no trained weights: a randomly initialised LLaDA of
any shape, built in its dtype directly on the device (no float32 copy of 8B weights), with
LLaDA-8B-Instruct's special-token ids counted from the end of the vocabulary. Imports torch and
this package only (the GPU image has no lm-eval)."""

from __future__ import annotations

import torch

# LLaDA-8B-Instruct: vocabulary 126464, mask 126336, EOS 126081, BOS 126080.
MASK_FROM_END, EOS_FROM_END, BOS_FROM_END = 128, 383, 384


def random_llada(*, d_model: int, n_heads: int, n_layers: int, mlp_hidden_size: int, vocab: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random ``LLaDAModelLM`` in eval mode. Token ids below ``vocab - BOS_FROM_END`` are
    ordinary tokens (draw random prompts from them)."""
    from lm_eval_temporal import LLaDAConfig, LLaDAModelLM

    if vocab <= BOS_FROM_END:
        raise ValueError(f"vocab={vocab}: expected more than {BOS_FROM_END} (room for LLaDA's special ids)")
    cfg = LLaDAConfig(d_model=d_model, n_heads=n_heads, n_kv_heads=n_heads, n_layers=n_layers,
                      mlp_hidden_size=mlp_hidden_size, vocab_size=vocab, embedding_size=vocab,
                      max_sequence_length=4096, rope=True, rope_theta=500000.0, rms_norm_eps=1e-5,
                      weight_tying=False, include_bias=False, mask_token_id=vocab - MASK_FROM_END,
                      eos_token_id=vocab - EOS_FROM_END, pad_token_id=vocab - EOS_FROM_END,
                      bos_token_id=vocab - BOS_FROM_END)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LLaDAModelLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()
