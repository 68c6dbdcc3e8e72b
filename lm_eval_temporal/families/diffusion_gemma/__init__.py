"""The DiffusionGemma family (Google's block-diffusion Gemma, transformers'
``DiffusionGemmaForBlockDiffusion``): recognise a checkpoint, load it text-only, its decoding
settings (``settings``) and denoising with per-step capture (``denoise``)."""

from __future__ import annotations

from typing import Any

from .denoise import Denoised, denoise
from .settings import DiffusionGemmaSettings

__all__ = ["MODEL_TYPE", "ARCHITECTURE", "recognises", "load", "DiffusionGemmaSettings", "Denoised", "denoise"]

MODEL_TYPE = "diffusion_gemma"  # DiffusionGemmaConfig.model_type
ARCHITECTURE = "DiffusionGemmaForBlockDiffusion"


def recognises(config: Any) -> bool:
    """Whether a checkpoint's config (a transformers config, or its ``config.json`` as a dict)
    is a DiffusionGemma one."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    return get("model_type") == MODEL_TYPE or ARCHITECTURE in (get("architectures") or ())


def load(path_or_id: str, *, revision: str | None = None, dtype: Any = None, device: Any = "cpu",
         trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(model in eval mode on ``device``, tokenizer) through transformers' own classes.

    Text-only: the checkpoint's vision tower is loaded with it (it is part of the weights) but
    never fed. When the checkpoint's generation_config names no pad / EOS id, the tokenizer's
    are used, so a row stops at EOS and is padded after it as transformers does for chat
    checkpoints."""
    import torch
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    tokenizer = AutoTokenizer.from_pretrained(path_or_id, revision=revision, trust_remote_code=trust_remote_code)
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(
        path_or_id, revision=revision, dtype=dtype if dtype is not None else torch.bfloat16,
        device_map=str(torch.device(device)), trust_remote_code=trust_remote_code)
    model.eval()
    gen = model.generation_config
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer
