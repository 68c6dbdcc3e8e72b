"""TCR checkpoint folders (``output_dir/checkpoints/step-N``) and the RNG states they carry, so
that a resumed run continues exactly where the interrupted one stopped."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINTS", "completed", "latest_checkpoint", "prune", "rng_state", "set_rng_state"]

CHECKPOINTS = "checkpoints"


def completed(output_dir: str | Path) -> list[Path]:
    """Finished checkpoints (those with ``state.json``; a crash can leave a ``.tmp`` folder), oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    done = [p for p in root.glob("step-*") if (p / "state.json").is_file()] if root.is_dir() else []
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    done = completed(output_dir)
    return done[-1] if done else None


def prune(output_dir: str | Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` finished checkpoints (None or 0: keep all)."""
    if keep:
        for old in completed(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
