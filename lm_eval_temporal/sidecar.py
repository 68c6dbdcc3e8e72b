"""The sidecar ``run_record_<date>.json``: sha256 of the files a run wrote (results, samples,
trajectories), computed once they are written.

lm-eval writes the results file first and the samples files after it, so the results JSON
cannot hold their hashes. The startup hook (:mod:`lm_eval_temporal._startup`) calls
:func:`update` after each of lm-eval's ``EvaluationTracker.save_results_aggregated`` and
``save_results_samples``: the sidecar is rewritten each time, and after the last call it
covers every file. ``<date>`` is the results file's, so several runs in one folder keep
their own sidecar. Only runs of this package's backend get one. Torch-free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lm_eval_temporal.run_record import RUN_RECORD_SCHEMA, file_sha256, resolve_or

__all__ = ["PREFIX", "sidecar_for", "date_of", "results_path", "build", "update"]

PREFIX = "run_record_"


def date_of(results_file: Path) -> str:
    """The ``<date>`` of ``results_<date>.json`` (lm-eval's name for a run's files)."""
    return results_file.stem.rsplit("_", 1)[-1]


def sidecar_for(results_file: Path) -> Path:
    return results_file.with_name(f"{PREFIX}{date_of(results_file)}.json")


def results_path(output_path: str, model_name_sanitized: str, date_id: str) -> Path:
    """Where lm-eval 0.4.13's tracker wrote a run's results file (its own rule)."""
    path = Path(output_path)
    if path.suffix == ".json":
        return path.with_name(f"{path.stem}_{date_id}.json")
    return path / model_name_sanitized / f"results_{date_id}.json"


def _entry(path: Path, folder: Path) -> dict[str, Any]:
    """A file's name (relative to the results folder where it is inside it) and sha256."""
    try:
        name = path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        name = str(path)
    return {"file": name, "sha256": file_sha256(path)}


def build(results_file: Path) -> dict[str, Any] | None:
    """The sidecar of a results file, from what is on disk now; None for a run of another
    backend (no ``config.llada_temporal``)."""
    results = json.loads(results_file.read_text(encoding="utf-8"))
    record = resolve_or(results, "/config/llada_temporal")
    if record is None:
        return None
    folder, date = results_file.parent, date_of(results_file)
    samples = {}
    for task in results.get("configs", {}):
        path = folder / f"samples_{task}_{date}.jsonl"
        if path.is_file():
            samples[task] = {**_entry(path, folder), "lines": sum(1 for _ in path.open("rb"))}
    trajectories = [_entry(Path(p), folder) for p in
                    resolve_or(record, "/run_record/evaluation/raw_output/trajectory_files", []) if Path(p).is_file()]
    return {"run_record_schema": RUN_RECORD_SCHEMA, "results": _entry(results_file, folder),
            "samples": samples, "trajectories": trajectories}


def update(output_path: str | None, model_name_sanitized: str, date_id: str | None) -> Path | None:
    """Rewrite the sidecar of the run lm-eval's tracker is saving (called after each of its
    saves); None when nothing was saved (no output path, or lm-eval could not write results,
    which it has already said)."""
    if not output_path or date_id is None:
        return None
    results_file = results_path(output_path, model_name_sanitized, date_id)
    if not results_file.is_file():
        return None
    content = build(results_file)
    if content is None:
        return None
    target = sidecar_for(results_file)
    part = target.with_name(target.name + ".part")
    part.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(part, target)  # whole or not at all
    return target
