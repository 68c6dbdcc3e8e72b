"""What a run records about itself: the effective settings (for lm-eval's results JSON and a
one-line summary at start), the checkpoint's identity, and a fingerprint of everything that
changes outputs (so an lm-eval cache or a trajectory ``.partial`` written under other settings
is refused or set aside, never replayed or merged).

The fingerprint (a :class:`Stamp`, one per request type) covers the package version, a digest of
the package code that shapes outputs (:func:`code_digest`), the checkpoint's and adapter's
identity (content hashes and hub commit, computed once per backend by
:func:`checkpoint_identity`) and the model arguments that can act on that request type
(:func:`acting_settings`). A setting that cannot act is left out, so it does not refuse a cache
for nothing: ``seed`` unless sampling is random (temperature unset or > 0, ``remasking=random``,
or a ``loglikelihood`` request, whose masks are drawn from it), ``mc_num`` outside
``loglikelihood``, ``stop_window``/``stop_share`` unless ``early_stop=stable``, ``stop_gap``
unless ``early_stop=confidence``, ``stop_min`` when early stop is off, ``gate_*`` unless
``vote=gated``. Local ``pretrained``/``peft`` paths count by their resolved absolute path, so
two spellings of one folder are one setting; hub ids are kept as given.

lm-eval's ``--use_cache`` database is keyed by request only and hooked once
(``set_cache_hook``), before any request is known, so the database keeps one stamp per
request type: a type's stamp is recorded when this backend first answers a request of that
type (:func:`record_cache`), and every stamp the database holds is checked when it is hooked
(:func:`check_cache`). A cache that holds only ``generate_until`` answers therefore does not
depend on ``mc_num``, but one that also holds ``loglikelihood`` answers is checked on both
types even if the new run asks only one of them (lm-eval replays answers before the backend
sees a request, so the check cannot wait). A non-empty database with no stamp at all (another
backend's, or an earlier version's) is refused: its answers cannot be told apart from ours.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lm_eval_temporal
from lm_eval_temporal.config import SamplerConfig, TemporalConfig
from lm_eval_temporal.options import BackendOptions
from lm_eval_temporal.tiny import shipped_dir

__all__ = ["RESULT_NEUTRAL", "ScheduleUse", "Efficiency", "REQUEST_TYPES", "output_settings", "acting_settings", "code_digest", "Stamp", "stamp",
           "summary", "model_info", "check_cache", "record_cache", "checkpoint_identity", "weights_digest",
           "tokenizer_digest"]

CACHE_KEY = "__llada_temporal_settings__"  # the entry this package keeps in an lm-eval --use_cache database
REQUEST_TYPES = ("generate_until", "loglikelihood")

# Model arguments that never change a response (how fast or where things run, or what is saved).
RESULT_NEUTRAL = frozenset({"device", "batch_size", "max_batch_size", "overlap", "trajectory_path", "trajectory_text",
                            "trajectory_mode", "mc_batch_size"})
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# A tokenizer's files in a checkpoint folder (what tokenizer_sha256 covers).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "chat_template.jinja",
                    "chat_template.json")


@dataclasses.dataclass
class ScheduleUse:
    """What had to be rounded to get a resolved schedule, and the lm-eval tasks decoded with it."""

    rounded: list[str]
    tasks: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class Efficiency:
    """A run's token and forward-pass totals over every generated row (decoded alone or in a
    batch): tokens per forward pass as the dLLM leaderboard counts it, and the wall time of
    generation (the time spent inside the backend's ``generate_until``)."""

    tokens: int = 0  # valid output tokens: generated before EOS, no prompt, no padding
    forward_passes: int = 0  # the model's forward passes (guidance counts two per step)
    samples: int = 0
    prompt_tokens: int = 0  # prompt tokens as fed (after any left truncation)
    max_prompt_tokens: int = 0
    max_tokens: int = 0
    seconds: float = 0.0  # wall time inside generate_until, summed over its calls

    def add(self, tokens: list[int], forward_passes: list[int], prompt_tokens: list[int] = ()) -> None:
        self.tokens += sum(tokens)
        self.forward_passes += sum(forward_passes)
        self.samples += len(tokens)
        self.prompt_tokens += sum(prompt_tokens)
        self.max_prompt_tokens = max([self.max_prompt_tokens, *prompt_tokens])
        self.max_tokens = max([self.max_tokens, *tokens])

    def as_record(self, **setup: Any) -> dict[str, Any]:
        """The ``efficiency`` block; ``setup``: how the run was served (device, dtype, batch
        size, backend), recorded as given."""
        return {"tokens": self.tokens, "forward_passes": self.forward_passes, "samples": self.samples,
                "tpf": self.tokens / self.forward_passes if self.forward_passes else None,
                "nfe": self.forward_passes / self.samples if self.samples else None,
                "rule": "tpf = summed valid output tokens (before EOS, no prompt, no padding) / summed forward "
                        "passes of the run; nfe = forward passes per sample",
                **setup,
                "input_tokens": self.prompt_tokens, "output_tokens": self.tokens,
                "max_input_tokens": self.max_prompt_tokens, "max_output_tokens": self.max_tokens,
                "generation_seconds": self.seconds,
                "timing_boundary": "wall clock (time.perf_counter) from entering to leaving the backend's "
                                   "generate_until, summed over its calls: tokenisation, forward passes, decoding, "
                                   "parsing, voting and trajectory writing; not model loading, dataset loading, "
                                   "scoring or lm-eval's own work; answers served by --use_cache are not timed",
                "tokens_per_second": self.tokens / self.seconds if self.seconds else None,
                "tokens_per_second_rule": "output_tokens (valid output tokens, as for tpf) / generation_seconds",
                "warmup_runs": 0, "timed_repeats": 1}


def output_settings(opts: BackendOptions) -> dict[str, Any]:
    """The model arguments that can change a response, as given (schedules resolved per task
    are recorded separately)."""
    return {k: v for k, v in dataclasses.asdict(opts).items() if k not in RESULT_NEUTRAL}


# Which files of the package shape a response (read by code_digest): the code and the data it
# reads (task configs, the embedded model's config and tokenizer), but not what only plots,
# trains, starts up or records a run, nor weights (their content is the checkpoint identity's).
_PACKAGE = Path(lm_eval_temporal.__file__).parent
_CODE_SUFFIXES = (".py", ".yaml", ".json", ".jinja")
_CODE_NEUTRAL = ("plot/", "tcr/", "cli.py", "_startup.py", "run_info.py", "trajectory.py", "tiny/train.py",
                 "tiny/checkpoint/train_", "tiny/testbed.py", "tiny/testbed/testbed.json", "leaderboard",
                 "run_record.py", "sidecar.py", "verify.py", "recorded.py", "revote.py")
# Checkpoint identity fields that name content (a retrained checkpoint at the same path changes them).
_CONTENT = ("weights_sha256", "commit", "peft_sha256")
_CODE = ("version", "code")


def _acts(opts: BackendOptions, request: str) -> dict[str, bool]:
    """The settings that act only under some other setting, and whether they act here."""
    # Dream draws positions with alg_temp > 0, and commits by coin flips with alg=origin
    seed = (opts.temperature is None or opts.temperature > 0 or opts.remasking == "random"
            or (opts.alg_temp or 0) > 0 or opts.alg == "origin" or request == "loglikelihood")
    stable, confidence = opts.early_stop == "stable", opts.early_stop == "confidence"
    gated = opts.vote == "gated"
    return {"seed": seed, "mc_num": request == "loglikelihood", "stop_window": stable, "stop_share": stable,
            "stop_gap": confidence, "stop_min": stable or confidence, "gate_window": gated, "gate_share": gated}


def _one_spelling(path: str | None) -> str | None:
    """A local folder as its resolved absolute path; a hub id (or a shipped model's name) as given."""
    if path is None or shipped_dir(path) is not None or not Path(path).expanduser().exists():
        return path
    return str(Path(path).expanduser().resolve())


def acting_settings(opts: BackendOptions, request: str = "generate_until") -> dict[str, Any]:
    """The model arguments that can change the answer to a request of type ``request``, with
    one spelling per local path (see the module docstring for what is left out)."""
    acts = _acts(opts, request)
    out = {k: v for k, v in output_settings(opts).items() if acts.get(k, True)}
    out.update(pretrained=_one_spelling(opts.pretrained), peft=_one_spelling(opts.peft))
    return out


@functools.lru_cache(maxsize=2)
def code_digest(root: Path = _PACKAGE) -> str:
    """sha256 over the files of the package (at ``root``) that shape outputs, names and contents,
    so that a changed parser or sampler refuses old answers even when ``__version__`` was not
    bumped."""
    files = []
    for folder, dirs, names in os.walk(root, followlinks=True):  # task_configs may be a link
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            rel = (Path(folder) / name).relative_to(root).as_posix()
            if name.endswith(_CODE_SUFFIXES) and not rel.startswith(_CODE_NEUTRAL):
                files.append(rel)
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode("utf-8") + b"\0" + (root / rel).read_bytes() + b"\0")
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Stamp:
    """What the answers to one request type depend on (version, code, checkpoint content and
    acting settings) and its digest."""

    settings: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode("utf-8")).hexdigest()[:16]

    def as_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "settings": self.settings}

    def differences(self, theirs: Mapping[str, Any]) -> str:
        """What differs between another run's stamp settings and this one, for a refusal:
        settings by name, and whether the weights or the code changed since."""
        mine = self.settings
        diff = sorted(k for k in {**theirs, **mine} if theirs.get(k) != mine.get(k))

        def group(label: str, keys: list[str], why: str = "") -> str:
            was = ", ".join(f"{k}={theirs.get(k)!r}" for k in keys)
            now = ", ".join(f"{k}={mine.get(k)!r}" for k in keys)
            return f"{label} ({was}; now {now}){why}" if keys else ""

        parts = [group("other settings", [k for k in diff if k not in _CONTENT + _CODE]),
                 group("other weights", [k for k in diff if k in _CONTENT],
                       ": the checkpoint (or adapter) changed since, e.g. retrained at the same path"),
                 group("other code", [k for k in diff if k in _CODE],
                       ": the package's code that shapes outputs changed since")]
        return "; ".join(p for p in parts if p) or "other settings"


def stamp(opts: BackendOptions, checkpoint: Mapping[str, Any], request: str = "generate_until") -> Stamp:
    """The :class:`Stamp` of a run's answers to ``request`` requests; ``checkpoint`` is the
    run's :func:`checkpoint_identity` (computed once per backend)."""
    content = {k: checkpoint[k] for k in _CONTENT if checkpoint.get(k) is not None}
    settings = {"version": lm_eval_temporal.__version__, "code": code_digest(), **content,
                **acting_settings(opts, request)}
    return Stamp(json.loads(json.dumps(settings, default=str)))  # as it reads back from JSON


def summary(opts: BackendOptions, temporal: TemporalConfig, default_gen: dict[str, int], family: Any = None) -> str:
    """The one line a run prints at start: every output-changing setting (``output_settings``)
    as it acts, i.e. the clustering the protocol uses and the embedded model's schedule, or
    ``per-task`` where each task's ``max_gen_toks`` / sampling decides (``checkpoint`` where a
    checkpoint's generation_config does); then the batch size and the package version. Values
    are written as model arguments are (true, none, 8:5:3). With ``family`` (the
    checkpoint's), settings that act on other families only are left out."""
    from lm_eval_temporal.families import foreign_names, get

    acting = output_settings(opts)
    for name in ("gen_length", "steps", "block_length", "temperature"):
        if acting[name] is None:
            acting[name] = default_gen.get(name, "per-task")
    for name in get("diffusion_gemma").model_args:
        if acting[name] is None:
            acting[name] = "checkpoint"
    if family is not None:
        acting = {k: v for k, v in acting.items() if k not in foreign_names(family)}
    acting.update(cluster=temporal.clusters, batch_size=opts.batch_size, version=lm_eval_temporal.__version__)
    return " ".join(f"{name}={_as_arg(value)}" for name, value in acting.items())


def _as_arg(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ":".join(map(_as_arg, value))
    return str(value)


def model_info(opts: BackendOptions, temporal: TemporalConfig, schedules: dict[SamplerConfig, ScheduleUse],
               checkpoint: Mapping[str, Any], device: str) -> dict[str, Any]:
    """What lm-eval writes into the results JSON (``get_model_info``): every setting that shapes
    a number, the schedules the tasks resolved to (what was rounded, which tasks), the device the
    model ran on, the package version and the checkpoint's identity (``checkpoint``:
    :func:`checkpoint_identity` of the folder or hub id the model was loaded from)."""
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
        "checkpoint": {**checkpoint, "pretrained": opts.pretrained, "loaded_from": checkpoint["pretrained"]},
        "settings_fingerprint": stamp(opts, checkpoint).fingerprint,
    }}


def check_cache(db: Any, opts: BackendOptions, checkpoint: Mapping[str, Any]) -> None:
    """Refuse an lm-eval cache database that would replay answers this run would not give: one
    holding a stamp (per request type) of other settings, weights or code, or one that holds
    answers but no stamp at all. An empty one is marked as ours."""
    theirs = db.get(CACHE_KEY)
    if theirs is None:
        if len(db):
            raise ValueError(f"--use_cache: this cache holds {len(db)} answers but no llada_temporal settings "
                             "(written by another backend, or by hand): they cannot be told apart from this run's. "
                             "Pass another --use_cache path.")
        db[CACHE_KEY] = {}
        return
    if "fingerprint" in theirs:  # one stamp for the whole cache, before stamps per request type
        raise ValueError("--use_cache: this cache was written by an earlier llada_temporal, whose settings record "
                         "does not cover the weights and code. Pass another --use_cache path.")
    for request, recorded in theirs.items():
        mine = stamp(opts, checkpoint, request)
        if recorded["fingerprint"] != mine.fingerprint:
            raise ValueError(f"--use_cache: the {request} answers in this cache were written by llada_temporal with "
                             f"{mine.differences(recorded['settings'])}. One cache path serves one configuration: "
                             "pass another --use_cache path.")


def record_cache(db: Any, opts: BackendOptions, checkpoint: Mapping[str, Any], request: str) -> None:
    """Mark a (checked) cache database as holding this run's answers to ``request`` requests;
    called before the first of them is stored."""
    recorded = dict(db.get(CACHE_KEY) or {})
    if request not in recorded:
        recorded[request] = stamp(opts, checkpoint, request).as_json()
        db[CACHE_KEY] = recorded


def weights_digest(folder: str | Path) -> str | None:
    """sha256 over the weight files of a local checkpoint folder (name and content), or None when
    there is none. Files in a Hugging Face cache are links to blobs named by their sha256,
    which is used as is instead of reading gigabytes again."""
    return _files_digest(folder, lambda name: name.endswith(_WEIGHT_SUFFIXES))


def tokenizer_digest(folder: str | Path) -> str | None:
    """sha256 over the tokenizer files of a local checkpoint folder, as :func:`weights_digest`."""
    return _files_digest(folder, lambda name: name in _TOKENIZER_FILES)


def _files_digest(folder: str | Path, wanted) -> str | None:
    root = Path(folder).expanduser()
    if not root.is_dir():
        return None
    files = sorted(p for p in root.iterdir() if wanted(p.name) and p.is_file())
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
                           "weights_sha256": weights_digest(folder) if folder else None,
                           # the tokenizer is loaded from the same folder (same revision)
                           "tokenizer_sha256": tokenizer_digest(folder) if folder else None}
    if commit:
        out["commit"] = commit
    if peft:
        adapter, _ = _local_folder(peft, None)
        out.update(peft=peft, peft_sha256=weights_digest(adapter) if adapter else None)
    return out
