"""``--model_args`` of the ``llada_temporal`` backend: parsing and validation.

Everything is checked before any model is loaded, and every error names the argument and
what it accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from lm_eval_temporal.sampler_config import REMASKING, schedule_error

EMBEDDED = "embedded"  # `pretrained` value (and default) for the model shipped in the package
VOTES = ("none", "fixed", "linear", "exp", "gated")
EARLY_STOPS = ("none", "stable", "confidence")
CLUSTERS = ("equivalence", "exact")
ANSWER_TASKS = ("auto", "gsm8k", "svamp", "math500", "countdown", "generic")
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


@dataclass(frozen=True)
class BackendOptions:
    """Model arguments. Generation settings left as None are resolved per request (see
    ``resolve_generation`` in the backend): the embedded model's defaults, else the task's
    ``max_gen_toks`` with the paper's ratios (steps = gen_length / 2, block_length 32)."""

    pretrained: str = EMBEDDED
    revision: str | None = None
    dtype: str = "auto"
    device: str | None = None
    trust_remote_code: bool = False
    peft: str | None = None
    mask_id: int | None = None
    gen_length: int | None = None
    steps: int | None = None
    block_length: int | None = None
    temperature: float | None = None
    cfg_scale: float = 0.0
    remasking: str = "low_confidence"
    suppress_eos: bool = False
    vote: str = "exp"
    alpha: float = 5.0
    gate_window: int = 8
    gate_share: float = 0.9
    early_stop: str = "none"
    stop_window: int = 8
    stop_share: float = 0.9
    stop_gap: tuple[float, ...] = (8.0, 5.0, 3.0)
    stop_min: float = 0.0
    cluster: str = "equivalence"
    answer_task: str = "auto"
    tse_alpha: float = 12.8
    tse_skip: float = 0.5
    batch_size: int = 1
    overlap: bool = True
    seed: int = 1234
    trajectory_path: str | None = None
    trajectory_text: bool = False
    mc_num: int = 128
    mc_batch_size: int = 32
    max_batch_size: int | None = None  # accepted because lm-eval always passes it; unused


def _names() -> list[str]:
    return [f.name for f in fields(BackendOptions)]


def _bool(name: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"model argument {name}={v!r}: expected true or false")


def _int(name: str, v: Any, lo: int | None = None) -> int:
    try:
        if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
            raise ValueError
        out = int(str(v).strip()) if not isinstance(v, (int, float)) else int(v)
    except (TypeError, ValueError):
        raise ValueError(f"model argument {name}={v!r}: expected an integer") from None
    if lo is not None and out < lo:
        raise ValueError(f"model argument {name}={v!r}: expected an integer >= {lo}")
    return out


def _float(name: str, v: Any, lo: float | None = None) -> float:
    try:
        if isinstance(v, bool):
            raise ValueError
        out = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"model argument {name}={v!r}: expected a number") from None
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(f"model argument {name}={v!r}: expected a finite number")
    if lo is not None and out < lo:
        raise ValueError(f"model argument {name}={v!r}: expected a number >= {lo}")
    return out


def _choice(name: str, v: Any, choices: tuple[str, ...]) -> str:
    s = str(v).strip()
    if s not in choices:
        raise ValueError(f"model argument {name}={v!r}: expected one of {', '.join(choices)}")
    return s


def _gap(name: str, v: Any) -> tuple[float, ...]:
    """One threshold, or three (``8:5:3``) for the first, middle and last third of the steps."""
    parts = list(v) if isinstance(v, (list, tuple)) else str(v).replace(" ", "").split(":")
    if len(parts) not in (1, 3):
        raise ValueError(
            f"model argument {name}={v!r}: expected one number or three separated by ':' "
            "(thresholds for the first, middle and last third of the steps, e.g. 8:5:3)"
        )
    return tuple(_float(name, p, lo=0.0) for p in parts)


def parse_options(kwargs: dict[str, Any]) -> BackendOptions:
    """Validate raw ``--model_args`` values (strings or already-typed) into BackendOptions."""
    unknown = sorted(set(kwargs) - set(_names()))
    if unknown:
        raise ValueError(
            f"unknown model argument(s) for llada_temporal: {', '.join(unknown)}. "
            f"Accepted: {', '.join(_names())}"
        )
    out: dict[str, Any] = {}
    for name, v in kwargs.items():
        if v is None or (isinstance(v, str) and v.strip() == "" and name != "pretrained"):
            continue
        if name in ("trust_remote_code", "suppress_eos", "trajectory_text", "overlap"):
            out[name] = _bool(name, v)
        elif name in ("gen_length", "steps", "block_length", "mc_num", "mc_batch_size", "gate_window", "stop_window"):
            out[name] = _int(name, v, lo=1)
        elif name == "mask_id":
            out[name] = _int(name, v, lo=0)
        elif name == "seed":
            out[name] = _int(name, v)
        elif name == "batch_size":
            s = str(v).strip().lower()
            # lm-eval's "auto" means "find the largest that fits"; diffusion batches are
            # bounded by the canvas, so auto picks a fixed, documented size.
            out[name] = 8 if s.startswith("auto") else _int(name, v, lo=1)
        elif name == "max_batch_size":
            out[name] = None if v is None else _int(name, v, lo=1)
        elif name in ("temperature", "cfg_scale", "alpha", "tse_alpha"):
            out[name] = _float(name, v, lo=0.0)
        elif name == "tse_skip":
            f = _float(name, v, lo=0.0)
            if f >= 1.0:
                raise ValueError(f"model argument tse_skip={v!r}: expected a number in [0, 1)")
            out[name] = f
        elif name in ("gate_share", "stop_share"):
            f = _float(name, v)
            if not 0.0 < f <= 1.0:
                raise ValueError(f"model argument {name}={v!r}: expected a number in (0, 1]")
            out[name] = f
        elif name == "stop_min":
            f = _float(name, v, lo=0.0)
            if f >= 1.0:
                raise ValueError(f"model argument stop_min={v!r}: expected a number in [0, 1)")
            out[name] = f
        elif name == "stop_gap":
            out[name] = _gap(name, v)
        elif name == "early_stop":
            out[name] = _choice(name, v, EARLY_STOPS)
        elif name == "vote":
            out[name] = _choice(name, v, VOTES)
        elif name == "cluster":
            out[name] = _choice(name, v, CLUSTERS)
        elif name == "answer_task":
            out[name] = _choice(name, "math500" if str(v).strip() == "math" else v, ANSWER_TASKS)
        elif name == "remasking":
            out[name] = _choice(name, v, REMASKING)
        elif name == "dtype":
            out[name] = _choice(name, v, DTYPES)
        else:  # free-form strings: pretrained, revision, device, peft, trajectory_path
            out[name] = str(v).strip()
    if out.get("pretrained", EMBEDDED) == "":
        raise ValueError("model argument pretrained='': expected a path, a hub id or 'embedded'")
    opts = BackendOptions(**out)
    err = schedule_error(opts.gen_length, opts.steps, opts.block_length)
    if err:
        raise ValueError(f"model arguments: {err}")
    return opts
