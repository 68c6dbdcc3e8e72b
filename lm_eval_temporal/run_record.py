"""The run record: what a leaderboard needs to know about a run, in one versioned schema
(docs/run_record.md), written by the backend under ``config.llada_temporal.run_record`` of
lm-eval's results JSON.

Fields lm-eval already writes elsewhere in the same JSON (few-shot count, task versions and
configs, the chat template's hash, the limit) are not copied: the record holds a reference
``{"$ref": POINTER}``, a JSON Pointer (RFC 6901) into the results JSON, which :func:`resolve`
follows. What only exists after lm-eval has written its files (their sha256) lives in the
sidecar (:mod:`lm_eval_temporal.sidecar`).

:data:`REQUIRED` lists every field a complete record has; ``verify`` checks it. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RUN_RECORD_SCHEMA", "REQUIRED", "TASK_REQUIRED", "ref", "resolve", "resolve_or", "missing_fields",
           "file_sha256",
           "task_config_files", "task_entry", "package_versions", "build"]

# 1: first version (model / evaluation / statistics sections, per-task config and dataset
#    hashes, extended efficiency block, sidecar with file hashes).
RUN_RECORD_SCHEMA = 1
_RECORD = "/config/llada_temporal"

# Every field of a complete record (JSON Pointers into the results JSON). Values may be null
# only where the schema says so (docs/run_record.md): a null is "not known", shown as an em
# dash, never a zero; a missing key is an incomplete record.
REQUIRED = tuple(f"{_RECORD}/{p}" for p in (
    "run_record/schema",
    "version", "family", "settings", "temporal", "schedules", "settings_fingerprint", "device",
    "checkpoint/pretrained", "checkpoint/revision", "checkpoint/weights_sha256", "checkpoint/tokenizer_sha256",
    "run_record/model/checkpoint", "run_record/model/tokenizer", "run_record/model/chat_template",
    "run_record/model/decoding_mode", "run_record/model/sampler", "run_record/model/max_output_length",
    "run_record/evaluation/limit", "run_record/evaluation/tasks",
    "run_record/evaluation/raw_output/samples", "run_record/evaluation/raw_output/trajectory_files",
    "run_record/evaluation/raw_output/sidecar",
    "run_record/statistics/measured_runs", "run_record/statistics/summary",
    "efficiency/serving_backend", "efficiency/backend_commit", "efficiency/device_name", "efficiency/device_count",
    "efficiency/dtype", "efficiency/quantization", "efficiency/batch_size", "efficiency/input_tokens",
    "efficiency/output_tokens", "efficiency/max_input_tokens", "efficiency/max_output_tokens",
    "efficiency/generation_seconds", "efficiency/timing_boundary", "efficiency/tokens_per_second",
    "efficiency/tokens_per_second_rule", "efficiency/warmup_runs", "efficiency/timed_repeats", "efficiency/rule",
    "efficiency/tpf", "efficiency/nfe",
    "scorer/calls", "scorer/unknown",
))
# Per task, under run_record/evaluation/tasks/<task>/.
TASK_REQUIRED = ("config_files", "config_sha256", "dataset/source", "dataset/split", "dataset/sha256",
                 "scorer/protocol", "scorer/answer_parser", "scorer/packages", "n_shot", "version", "config",
                 "filters", "repeats", "max_output_length")


def ref(pointer: str, **note: Any) -> dict[str, Any]:
    """A reference to a field lm-eval writes elsewhere in the results JSON."""
    return {"$ref": pointer, **note}


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


_ABSENT = object()


def resolve(doc: Any, pointer: str, *, follow: bool = True) -> Any:
    """The value at a JSON Pointer (RFC 6901), following ``$ref`` objects on the way (and, with
    ``follow``, the one found at the end); raises KeyError naming the pointer when a part is
    not there."""
    value = doc
    for token in pointer.split("/")[1:] if pointer else []:
        key = _unescape(token)
        if _is_ref(value) and key not in value:
            value = resolve(doc, value["$ref"])
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise KeyError(pointer)
    return resolve(doc, value["$ref"]) if follow and _is_ref(value) else value


def _is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("$ref"), str)


def _refs(value: Any, where: str) -> Iterable[tuple[str, str]]:
    """(where, target) of every ``$ref`` inside ``value``."""
    if isinstance(value, Mapping):
        if "$ref" in value:
            yield where, value["$ref"]
        for k, v in value.items():
            yield from _refs(v, f"{where}/{_escape(str(k))}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _refs(v, f"{where}/{i}")


def missing_fields(results: Mapping[str, Any]) -> list[str]:
    """The fields a complete record has that ``results`` (a results JSON) lacks, and the
    references in its record that lead nowhere, one line each."""
    out = []
    out.extend(f"run record: missing {p}" for p in REQUIRED if not _has(results, p))
    for task in results.get("configs", {}):
        base = f"{_RECORD}/run_record/evaluation/tasks/{_escape(task)}"
        out.extend(f"run record: missing {base}/{p}" for p in TASK_REQUIRED if not _has(results, f"{base}/{p}"))
    for where, target in _refs(resolve_or(results, _RECORD, {}), _RECORD):
        if resolve_or(results, target, _ABSENT) is _ABSENT:
            out.append(f"run record: {where} refers to {target}, which the results JSON does not hold")
    return out


def resolve_or(doc: Any, pointer: str, default: Any = None, *, follow: bool = True) -> Any:
    """:func:`resolve`, or ``default`` where the pointer leads nowhere."""
    try:
        return resolve(doc, pointer, follow=follow)
    except KeyError:
        return default


def _has(doc: Any, pointer: str) -> bool:
    """Whether the record holds the field (a reference counts; where it leads is checked apart)."""
    return resolve_or(doc, pointer, _ABSENT, follow=False) is not _ABSENT


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _task_dir() -> Path:
    from lm_eval_temporal._startup import task_dir

    return Path(task_dir())


def task_config_files(task: str, folder: Path | None = None) -> list[Path]:
    """The files that define one of this package's tasks: its YAML, the YAML it includes and
    ``utils.py``; empty for a task that is not ours (a built-in lm-eval task)."""
    folder = folder or _task_dir()
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if re.search(rf"^task:\s*{re.escape(task)}\s*$", text, re.M):
            included = re.findall(r"^include:\s*(\S+)\s*$", text, re.M)
            return [path, *(folder / name for name in included), folder / "utils.py"]
    return []


def _config_sha256(files: list[Path]) -> str:
    """sha256 over the files' names and contents (in the order given)."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _dataset(task: str, files: list[Path]) -> dict[str, Any]:
    """Where one of our tasks' documents came from: the offline file (and its sha256), the
    Hub id, a pinned URL, or the generator (with the sha256 of the documents it made)."""
    from lm_eval_temporal import tasks

    if not files:  # lm-eval's own task: its config names the dataset
        return {"source": "lm-eval", "path": ref(f"/configs/{_escape(task)}/dataset_path"),
                "split": ref(f"/configs/{_escape(task)}/test_split"), "sha256": None, "revision": None}
    loader = re.search(r"^custom_dataset:\s*!function\s+utils\.load_(\w+)", files[0].read_text(encoding="utf-8"), re.M)
    name = loader.group(1) if loader else None
    if (name, "test") not in tasks.LOCAL_FILES:
        docs = list(getattr(tasks, f"load_{name}")()["test"]) if name else []
        blob = json.dumps(docs, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return {"source": "generated", "generator": f"lm_eval_temporal.tasks.load_{name}", "split": "test",
                "documents": len(docs), "sha256": hashlib.sha256(blob).hexdigest(), "revision": None}
    rel = tasks.LOCAL_FILES[name, "test"]
    folder = os.environ.get(tasks.DATA_ENV, "").strip()
    if folder:
        path = Path(folder).expanduser() / rel
        return {"source": "file", "file": rel, "env": tasks.DATA_ENV, "split": "test",
                "sha256": file_sha256(path) if path.is_file() else None, "revision": None}
    if name == "countdown":
        return {"source": "url", "url": tasks.COUNTDOWN_URL, "split": "test", "sha256": None,
                "revision": "837888f22c21a5da91a0af2b0d7b19e81d9b47ec"}
    hub, config, split = tasks.HUB[name, "test"]
    return {"source": "hub", "hub_id": hub, "config": config, "split": split, "sha256": None, "revision": None}


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that score answers (None: not installed)."""
    out = {}
    for name in ("math-verify", "sympy", "lm_eval", "lm-eval-temporal"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def task_entry(task: str, answer_parser: str | None, protocol: str, gen_length: int | None) -> dict[str, Any]:
    """The run record of one lm-eval task: config hash, dataset, scorer, and references to
    what lm-eval records of it."""
    files = task_config_files(task)
    t = _escape(task)
    return {
        "config_files": [p.name for p in files],
        "config_sha256": _config_sha256(files) if files else None,
        "dataset": _dataset(task, files),
        "scorer": {"protocol": protocol, "answer_parser": answer_parser,
                   "process_results": "lm_eval_temporal.tasks.process_results" if files else ref(
                       f"/configs/{t}/process_results"),
                   "packages": package_versions()},
        "n_shot": ref(f"/n-shot/{t}"),
        "version": ref(f"/versions/{t}"),
        "config": ref(f"/configs/{t}"),
        # lm-eval names each metric's filter after the comma in /results/<task> keys ("none":
        # no filter); /configs/<task>/filter_list holds the filters where a task sets some.
        "filters": ref(f"/results/{t}", rule="the filter is the part after ',' in each metric key"),
        "repeats": ref(f"/configs/{t}/repeats"),
        "max_output_length": gen_length,
    }


def build(*, tasks: Mapping[str, tuple[str | None, int | None]], protocol: str, decoding_mode: str,
          trajectory_files: list[str]) -> dict[str, Any]:
    """``config.llada_temporal.run_record`` of a run: ``tasks`` maps each lm-eval task to
    (answer parser, gen_length)."""
    return {
        "schema": RUN_RECORD_SCHEMA,
        "model": {
            "checkpoint": ref(f"{_RECORD}/checkpoint"),
            "tokenizer": ref(f"{_RECORD}/checkpoint", rule="loaded from the checkpoint's folder: same revision; "
                                                           "tokenizer_sha256 hashes its tokenizer files"),
            "chat_template": ref("/chat_template_sha", rule="lm-eval's: null when --apply_chat_template is off"),
            "decoding_mode": decoding_mode,
            "sampler": ref(f"{_RECORD}/schedules"),
            "max_output_length": {t: g for t, (_, g) in sorted(tasks.items())},
        },
        "evaluation": {
            "limit": ref("/config/limit", rule="null: every document; see /n-samples"),
            "tasks": {t: task_entry(t, parser, protocol, g) for t, (parser, g) in sorted(tasks.items())},
            "raw_output": {
                "samples": "samples_<task>_<date>.jsonl next to the results file (lm_eval --log_samples)",
                "trajectory_files": trajectory_files,
                "sidecar": "run_record_<date>.json next to the results file: sha256 of results, samples and "
                           "trajectory files, written after lm-eval wrote them",
            },
        },
        "statistics": {"measured_runs": 1,
                       "summary": "per task: the mean over documents (tpf: summed tokens / summed forward passes); "
                                  "lm-eval's stderr beside each metric"},
    }
