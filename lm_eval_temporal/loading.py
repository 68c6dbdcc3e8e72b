"""The one loader: checkpoint (+ optional LoRA adapter) + tokenizer + the special token ids.

:func:`load_model` reads the checkpoint's ``config.json``, picks its family
(:mod:`lm_eval_temporal.families`) and lets the family load the weights; the rules every
family shares (where a checkpoint is, dtypes, special token ids, adapters) live here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lm_eval_temporal.config import DTYPES as DTYPE_NAMES
from lm_eval_temporal.errors import OptionError

__all__ = ["LoadedModel", "load_model", "read_config", "pick_family", "resolve_dtype", "compile_blocks",
           "mask_token", "eos_token", "pad_token", "apply_adapter", "masked_model"]

DTYPES = {n: getattr(torch, n) for n in DTYPE_NAMES if n != "auto"}  # "auto" is resolved per device
# owner/name or name: what the hub accepts as a repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    """A model in eval mode on ``device`` with its tokenizer and resolved token ids."""

    model: Any
    tokenizer: Any
    mask_id: int | None  # None for families that do not denoise from a mask token
    eos_id: int | None
    pad_id: int | None
    device: torch.device
    dtype: torch.dtype
    name: str
    family: str = "llada"  # the name of its lm_eval_temporal.families.Family
    end_ids: tuple[int, ...] = ()  # more ids that end an answer (e.g. a generation_config's EOS list)

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end an answer: EOS (the model's and the tokenizer's) and, for
        LLaDA-Instruct's chat format, ``<|eot_id|>``; sorted."""
        tok = self.tokenizer
        stops = {i for i in (self.eos_id, getattr(tok, "eos_token_id", None), *self.end_ids) if i is not None}
        if "<|eot_id|>" in tok.get_vocab():
            stops.add(tok.convert_tokens_to_ids("<|eot_id|>"))
        return sorted(stops)


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``"auto"`` (bfloat16 on CUDA, float32 elsewhere) or one of float32, bfloat16, float16, float64."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype={dtype}: expected one of auto, {', '.join(DTYPES)}")
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _check_source(value: str, name: str = "pretrained") -> None:
    """Fail at once for a value that can only mean a local path (``./x``, ``~/x``, ``/x``, or
    ``runs/tiny`` when ``runs`` is a local folder) and is not there; a hub id is left to the hub."""
    path = Path(value).expanduser()
    if path.exists():
        return
    parent = Path(value.split("/")[0]).expanduser() if "/" in value else None
    if value.startswith((".", "~", "/")) or (parent is not None and parent.is_dir()):
        raise ValueError(f"{name}={value!r}: no such local directory")
    if not _HUB_ID.match(value):
        raise ValueError(f"{name}={value!r}: no such local directory, and not a hub id like 'GSAI-ML/LLaDA-8B-Instruct'")


def compile_blocks(model: Any) -> None:
    """``torch.compile`` each transformer block, with dynamic shapes so that batches of other
    sizes and prompt lengths reuse the compiled code instead of recompiling. Fuses the
    element-wise work around the matrix multiplies (RMSNorm and RoPE casts, SwiGLU, residual
    adds); the result equals eager up to floating-point rounding (in float32 on the CPU the
    tokens are the same; test). Models without LLaDA's ``transformer.blocks`` are compiled whole."""
    blocks = [m for name, m in model.named_modules() if name.endswith("transformer.blocks")]
    for block in (blocks[0] if blocks else [model]):
        block.compile(dynamic=True)


def _first(value: Any) -> int | None:
    """Configs may hold a list of ids (e.g. several EOS tokens); the first is the main one."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else int(value)


def load_model(
    pretrained: str,
    *,
    family: str = "auto",
    revision: str | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    peft: str | None = None,
    mask_id: int | None = None,
    compile: bool = False,
) -> LoadedModel:
    """Load ``pretrained`` (local directory or hub id) for diffusion decoding.

    ``family`` (``auto``: recognised from the checkpoint's ``config.json``; or one of
    :data:`lm_eval_temporal.families.NAMES`) picks the loader (:mod:`lm_eval_temporal.families`).
    ``device`` defaults to CUDA when available, else CPU. ``peft`` is a LoRA adapter directory
    or hub id applied on top; ``mask_id`` overrides a masked-diffusion model's mask token;
    ``compile=True`` compiles the transformer blocks (:func:`compile_blocks`).
    """
    pretrained = str(pretrained)
    config = read_config(pretrained, revision)
    chosen = pick_family(family, config)
    if peft is not None:
        _check_source(str(peft), "peft")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return chosen.load(pretrained, config, revision=revision, dtype=resolve_dtype(dtype, device), device=device,
                       trust_remote_code=trust_remote_code, peft=peft, mask_id=mask_id, compile=compile)


def read_config(pretrained: str, revision: str | None = None) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict (no weights are read): what picks its family."""
    from transformers import PretrainedConfig

    _check_source(pretrained)
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(pretrained, revision=revision)
    except OSError as e:
        if Path(pretrained).expanduser().exists():
            raise
        # A mistyped local path (``runs/tiny``) looks like a hub id; say both readings failed.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OSError(
            f"pretrained={pretrained!r}: there is no local directory of that name, and loading it as a "
            f"Hugging Face Hub id failed: {first}"
        ) from e
    return config_dict


def pick_family(family: str, config: dict[str, Any]):
    """The :class:`~lm_eval_temporal.families.Family` of a checkpoint: recognised from its
    config (``auto``), or the one named, which must then be able to read it."""
    from lm_eval_temporal import families

    if family == "auto":
        return families.detect(config)
    chosen, found = families.get(family), families.detect(config)
    if chosen.name != found.name and (found.name != "llada" or not chosen.recognises(config)):
        # llada reads any masked predictor; every other family only its own checkpoints
        raise OptionError(f"family={family!r}: this checkpoint is a {found.name} model (model_type "
                          f"{config.get('model_type')!r}); pass family=auto or family={found.name}")
    return chosen


def mask_token(pretrained: str, config: Any, tokenizer: Any, mask_id: int | None) -> int:
    """The mask id of a masked-diffusion model: ``mask_id``, else ``config.mask_token_id``,
    else the tokenizer's; never the pad token (padding would read as masked positions)."""
    resolved = next(
        (int(v) for v in (mask_id, getattr(config, "mask_token_id", None), tokenizer.mask_token_id) if v is not None),
        None,
    )
    if resolved is None:
        raise ValueError(
            f"{pretrained}: neither the model config nor the tokenizer defines a mask token; "
            "pass mask_id=<token id of the diffusion mask>"
        )
    pad_id = pad_token(config, tokenizer)
    for source, pad in (("tokenizer pad token", pad_id), ("config pad_token_id", _first(getattr(config, "pad_token_id", None)))):
        if pad is not None and pad == resolved:
            raise ValueError(
                f"{pretrained}: the {source} ({pad}) equals the mask id ({resolved}); padding would be read as "
                "masked positions. Use a tokenizer/config whose pad token differs, or pass a different mask_id"
            )
    return resolved


def eos_token(config: Any, tokenizer: Any) -> int | None:
    """The main EOS id: the config's first, else the tokenizer's."""
    eos_id = _first(getattr(config, "eos_token_id", None))
    return tokenizer.eos_token_id if eos_id is None else eos_id


def pad_token(config: Any, tokenizer: Any) -> int | None:
    """The pad id: the tokenizer's, else the config's first."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _first(getattr(config, "pad_token_id", None))


def apply_adapter(model: Any, peft: str | None) -> Any:
    """``model`` with the LoRA adapter ``peft`` applied (``peft.PeftModel``), or as it is."""
    if peft is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(peft))


def masked_model(pretrained: str, model: Any, tokenizer: Any, *, family: str, peft: str | None, device: torch.device,
                 dtype: torch.dtype, compile: bool, mask_id: int | None) -> LoadedModel:
    """A masked-diffusion model read from ``pretrained``, finished the way every such family
    loads: adapter applied, on ``device`` in eval mode, compiled if asked, and its mask / EOS /
    pad ids resolved from its config and tokenizer."""
    model = apply_adapter(model, peft)
    model.to(device)
    model.eval()
    if compile:
        compile_blocks(model)
    cfg = model.config
    return LoadedModel(model=model, tokenizer=tokenizer, mask_id=mask_token(pretrained, cfg, tokenizer, mask_id),
                       eos_id=eos_token(cfg, tokenizer), pad_id=pad_token(cfg, tokenizer), device=device, dtype=dtype,
                       name=pretrained, family=family)
