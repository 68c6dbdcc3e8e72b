"""What a run records about itself: the effective settings (for lm-eval's results JSON and a
one-line summary at start), the checkpoint's identity, and a fingerprint of everything that
changes outputs (so an lm-eval cache written under other settings is refused)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import lm_eval_temporal
from lm_eval_temporal.config import SamplerConfig, TemporalConfig
from lm_eval_temporal.options import BackendOptions

__all__ = ["RESULT_NEUTRAL", "ScheduleUse", "output_settings", "fingerprint", "summary", "model_info", "check_cache",
           "checkpoint_identity", "weights_digest"]

CACHE_KEY = "__llada_temporal_settings__"  # the entry this package keeps in an lm-eval --use_cache database

# Model arguments that never change a response (how fast or where things run, or what is saved).
RESULT_NEUTRAL = frozenset({"device", "batch_size", "max_batch_size", "overlap", "trajectory_path", "trajectory_text",
                            "trajectory_mode", "mc_batch_size"})
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclasses.dataclass
class ScheduleUse:
    """What had to be rounded to get a resolved schedule, and the lm-eval tasks decoded with it."""

    rounded: list[str]
    tasks: set[str] = dataclasses.field(default_factory=set)


def output_settings(opts: BackendOptions) -> dict[str, Any]:
    """The model arguments that can change a response, as given (schedules resolved per task
    are recorded separately)."""
    return {k: v for k, v in dataclasses.asdict(opts).items() if k not in RESULT_NEUTRAL}


def fingerprint(opts: BackendOptions) -> str:
    """A short digest of the package version and every output-changing setting."""
    text = json.dumps({"version": lm_eval_temporal.__version__, **output_settings(opts)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def summary(opts: BackendOptions, temporal: TemporalConfig, default_gen: dict[str, int]) -> str:
    """The one line a run prints at start."""
    gen = "/".join(str(getattr(opts, k) or default_gen.get(k) or "per-task")
                   for k in ("gen_length", "steps", "block_length"))
    stop = "off" if temporal.early_stop == "none" else f"{temporal.early_stop} (window {temporal.stop_window}, " \
                                                       f"share {temporal.stop_share})"
    return (f"model={opts.pretrained} gen_length/steps/block_length={gen} temperature={opts.temperature or 0:g} "
            f"vote={temporal.vote} alpha={temporal.alpha:g} cluster={temporal.cluster} early_stop={stop} "
            f"seed={opts.seed} batch_size={opts.batch_size} version={lm_eval_temporal.__version__}")


def model_info(opts: BackendOptions, temporal: TemporalConfig, schedules: dict[SamplerConfig, ScheduleUse],
               checkpoint: str, device: str) -> dict[str, Any]:
    """What lm-eval writes into the results JSON (``get_model_info``): every setting that shapes
    a number, the schedules the tasks resolved to (what was rounded, which tasks), the device the
    model ran on, the package version and the checkpoint's identity."""
    where: dict[str, Any] = {"device": device}
    if opts.device and opts.device != device:
        # lm-eval's own config.device is the --device it passed (cuda:0 unless told), not where the model ran.
        where["device_note"] = f"config.device={opts.device} was asked for; the model ran on {device}"
    return {"llada_temporal": {
        "version": lm_eval_temporal.__version__,
        "settings": output_settings(opts),
        **where,
        "temporal": dataclasses.asdict(temporal),
        "schedules": [{**dataclasses.asdict(c), "rounded": u.rounded, "tasks": sorted(u.tasks)}
                      for c, u in schedules.items()],
        "checkpoint": {**checkpoint_identity(checkpoint, opts.revision, opts.peft), "pretrained": opts.pretrained,
                       "loaded_from": checkpoint},
        "settings_fingerprint": fingerprint(opts),
    }}


def check_cache(db: Any, opts: BackendOptions) -> None:
    """Record this run's settings in an lm-eval cache database, or refuse one written under
    other settings (lm-eval keys its cache by request only, so it would replay them)."""
    mine = {"fingerprint": fingerprint(opts), "settings": json.loads(json.dumps(output_settings(opts), default=str))}
    theirs = db.get(CACHE_KEY)
    if theirs is None:
        db[CACHE_KEY] = mine
        return
    if theirs["fingerprint"] == mine["fingerprint"]:
        return
    old, new = theirs["settings"], mine["settings"]
    diff = sorted(k for k in {**old, **new} if old.get(k) != new.get(k))
    was = ", ".join(f"{k}={old.get(k)!r}" for k in diff) or "another package version"
    now = ", ".join(f"{k}={new.get(k)!r}" for k in diff) or lm_eval_temporal.__version__
    raise ValueError(f"--use_cache: this cache was written by llada_temporal with other settings ({was}; now {now}). "
                     "One cache path serves one configuration: pass another --use_cache path.")


def weights_digest(folder: str | Path) -> str | None:
    """sha256 over the weight files of a local checkpoint folder (name and content), or None when
    there is none. Files in a Hugging Face cache are links to blobs named by their sha256,
    which is used as is instead of reading gigabytes again."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        return None
    files = sorted(p for p in root.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES) and p.is_file())
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode("utf-8"))
        target = p.resolve()
        if p.is_symlink() and len(target.name) == 64 and target.parent.name == "blobs":
            h.update(target.name.encode("ascii"))
            continue
        with target.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def _local_folder(name: str, revision: str | None) -> tuple[Path | None, str | None]:
    """(folder holding the files, hub commit) of a local path or of a hub id already in the
    local cache (looked up without the network)."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser(), None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or not a hub id: nothing to hash
        return None, None
    return folder, folder.name  # snapshots/<commit>


def checkpoint_identity(name: str, revision: str | None, peft: str | None) -> dict[str, Any]:
    """Path or hub id, revision (and the hub commit it resolved to) and a content hash of the
    weights (and of the adapter)."""
    folder, commit = _local_folder(name, revision)
    out: dict[str, Any] = {"pretrained": name, "revision": revision,
                           "weights_sha256": weights_digest(folder) if folder else None}
    if commit:
        out["commit"] = commit
    if peft:
        adapter, _ = _local_folder(peft, None)
        out.update(peft=peft, peft_sha256=weights_digest(adapter) if adapter else None)
    return out
