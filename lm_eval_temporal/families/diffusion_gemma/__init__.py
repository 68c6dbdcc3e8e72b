"""The DiffusionGemma family (Google's block-diffusion Gemma, transformers'
``DiffusionGemmaForBlockDiffusion``): recognise a checkpoint, load it text-only, its decoding
settings (``settings``: the checkpoint's generation_config, overridable by model arguments of
the same names) and denoising with per-step capture through transformers' own ``generate``
(``denoise``, :mod:`.capture`).

Batch rule: transformers draws DiffusionGemma's random canvases from the global RNG in the
shape of the whole batch, and numbers positions from the padded start, so a row's tokens
depend on its batch. The family therefore generates every row alone, unpadded, seeded from
its own request: the same seed gives the same tokens whatever the batch (at the cost of
batching on a GPU).

Importing this package imports neither torch nor transformers (model arguments are checked
against :class:`DiffusionGemmaSettings` before any of them loads); ``denoise`` loads on use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .settings import DiffusionGemmaSettings

__all__ = ["MODEL_TYPE", "ARCHITECTURE", "FAMILY", "recognises", "load", "DiffusionGemmaSettings", "Denoised",
           "denoise"]

MODEL_TYPE = "diffusion_gemma"  # DiffusionGemmaConfig.model_type
ARCHITECTURE = "DiffusionGemmaForBlockDiffusion"


def __getattr__(name: str):  # PEP 562: the torch side loads on first use
    if name in ("denoise", "Denoised"):
        from . import capture

        return getattr(capture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _load(pretrained: str, config: Mapping[str, Any], *, revision, dtype, device, trust_remote_code, peft, mask_id,
          compile):
    """The family's loader for :func:`lm_eval_temporal.load_model`."""
    from lm_eval_temporal import loading

    model, tokenizer = load(pretrained, revision=revision, dtype=dtype, device=device,
                            trust_remote_code=trust_remote_code)
    model = loading.apply_adapter(model, peft)
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, (list, tuple)) else [gen.eos_token_id]
    return loading.LoadedModel(model=model, tokenizer=tokenizer, mask_id=None, eos_id=int(eos[0]),
                               pad_id=int(gen.pad_token_id), device=device, dtype=dtype, name=pretrained,
                               family="diffusion_gemma", end_ids=tuple(int(e) for e in eos))


def settings(loaded: Any, opts: Any, gen_kwargs: Mapping[str, Any],
             defaults: Mapping[str, int]) -> tuple[DiffusionGemmaSettings, list[str]]:
    """The checkpoint's decoding settings, each model argument of the same name overriding
    it; without one, ``max_new_tokens`` is the checkpoint's, else the task's ``max_gen_toks``."""
    model = loaded.model
    overrides = {name: getattr(opts, name) for name in DiffusionGemmaSettings.names()}
    if overrides["max_new_tokens"] is None and getattr(model.generation_config, "max_new_tokens", None) is None:
        overrides["max_new_tokens"] = gen_kwargs.get("max_gen_toks")
    out = DiffusionGemmaSettings.from_generation_config(model.generation_config,
                                                        canvas_length=int(model.config.canvas_length), **overrides)
    rounded = []
    if out.gen_length != out.max_new_tokens:
        rounded.append(f"max_new_tokens {out.max_new_tokens} -> {out.gen_length} "
                       f"(whole canvases of canvas_length={out.canvas_length})")
    return out, rounded


def _denoise(loaded: Any, input_ids, attention_mask, config: DiffusionGemmaSettings, *, seeds: Sequence[int] | None,
             capture: bool, step_callback=None, callback_gap: bool = False):
    """Each row alone (see the module docstring), padded back into one batch: a row's tokens
    after it ended, and its steps after its last, are its pad / last view."""
    import torch

    from lm_eval_temporal.sampler import GenerationOutput

    from .capture import denoise as run_one

    if step_callback is not None:
        raise ValueError("early_stop: not available for DiffusionGemma (its generate stops each canvas adaptively)")
    pad = loaded.pad_id
    rows = []
    for b in range(input_ids.shape[0]):
        ids = input_ids[b][attention_mask[b].bool()][None].to(loaded.device)
        rows.append(run_one(loaded.model, ids, None, config, seed=int(seeds[b]) if seeds is not None else 0,
                            capture=capture))
    G = max(r.sequences.shape[1] for r in rows)
    seqs = torch.full((len(rows), G), pad, dtype=torch.long)
    for b, r in enumerate(rows):
        seqs[b, :r.sequences.shape[1]] = r.sequences[0].cpu()
    trajectory = None
    if capture:
        S = max(r.trajectory.shape[1] for r in rows)
        trajectory = torch.full((len(rows), S, G), pad, dtype=torch.int32)
        for b, r in enumerate(rows):
            t = r.trajectory[0]
            t = torch.cat([t, t[-1:].expand(S - t.shape[0], -1)])  # a row repeats its last view
            trajectory[b, :, :t.shape[1]] = t
    steps_run = torch.cat([r.steps_run for r in rows])
    return GenerationOutput(sequences=torch.cat([input_ids.cpu(), seqs], dim=1), trajectory=trajectory,
                            steps_run=steps_run, forward_passes=torch.cat([r.forward_passes for r in rows]))


def _family():
    from lm_eval_temporal.families import Family

    return Family(name="diffusion_gemma", recognises=recognises, load=_load, settings=settings, denoise=_denoise,
                  model_args=frozenset(DiffusionGemmaSettings.names()))


FAMILY = _family()
