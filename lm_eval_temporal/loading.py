"""The one loader: checkpoint (+ optional LoRA adapter) + tokenizer + the special token ids.

LLaDA checkpoints (``model_type: "llada"``) always load with this package's own
:class:`~lm_eval_temporal.llada.LLaDAModelLM`: their hub remote code does not run on
transformers 5, so ``trust_remote_code`` is never used for them. Any other masked predictor
whose forward returns ``.logits`` (BERT, ModernBERT, ...) loads through
``AutoModelForMaskedLM``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lm_eval_temporal.config import DTYPES as DTYPE_NAMES

__all__ = ["LoadedModel", "load_model", "resolve_dtype", "compile_blocks"]

DTYPES = {n: getattr(torch, n) for n in DTYPE_NAMES if n != "auto"}  # "auto" is resolved per device
# owner/name or name: what the hub accepts as a repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    """A model in eval mode on ``device`` with its tokenizer and resolved token ids."""

    model: Any
    tokenizer: Any
    mask_id: int
    eos_id: int | None
    pad_id: int | None
    device: torch.device
    dtype: torch.dtype
    name: str

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end an answer: EOS (the model's and the tokenizer's) and, for
        LLaDA-Instruct's chat format, ``<|eot_id|>``; sorted."""
        tok = self.tokenizer
        stops = {i for i in (self.eos_id, getattr(tok, "eos_token_id", None)) if i is not None}
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
    revision: str | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    peft: str | None = None,
    mask_id: int | None = None,
    compile: bool = False,
) -> LoadedModel:
    """Load ``pretrained`` (local directory or hub id) for masked-diffusion sampling.

    ``device`` defaults to CUDA when available, else CPU. The mask id is ``mask_id`` if given,
    else ``config.mask_token_id``, else the tokenizer's mask token; loading fails when none is
    known or when the pad token is the mask token (padding would read as masked positions).
    ``peft`` is a LoRA adapter directory or hub id applied on top (``peft.PeftModel``).
    ``compile=True`` compiles the transformer blocks (:func:`compile_blocks`).
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer, PretrainedConfig

    from lm_eval_temporal.llada import LLaDAModelLM

    pretrained = str(pretrained)
    _check_source(pretrained)
    if peft is not None:
        _check_source(str(peft), "peft")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = resolve_dtype(dtype, device)

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
    if config_dict.get("model_type") == "llada":
        model = LLaDAModelLM.from_pretrained(pretrained, revision=revision, dtype=torch_dtype)
    else:
        model = AutoModelForMaskedLM.from_pretrained(
            pretrained, revision=revision, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    tokenizer = AutoTokenizer.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
    if peft is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(peft))
    model.to(device)
    model.eval()
    if compile:
        compile_blocks(model)

    config = model.config
    resolved = next(
        (int(v) for v in (mask_id, getattr(config, "mask_token_id", None), tokenizer.mask_token_id) if v is not None),
        None,
    )
    if resolved is None:
        raise ValueError(
            f"{pretrained}: neither the model config nor the tokenizer defines a mask token; "
            "pass mask_id=<token id of the diffusion mask>"
        )
    eos_id = _first(getattr(config, "eos_token_id", None))
    if eos_id is None:
        eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _first(getattr(config, "pad_token_id", None))
    for source, pad in (("tokenizer pad token", pad_id), ("config pad_token_id", _first(getattr(config, "pad_token_id", None)))):
        if pad is not None and pad == resolved:
            raise ValueError(
                f"{pretrained}: the {source} ({pad}) equals the mask id ({resolved}); padding would be read as "
                "masked positions. Use a tokenizer/config whose pad token differs, or pass a different mask_id"
            )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        mask_id=resolved,
        eos_id=eos_id,
        pad_id=pad_id,
        device=device,
        dtype=torch_dtype,
        name=pretrained,
    )
