"""The ``trajectory_path`` file: one :class:`TemporalRecord` line per (task, document).

Integrity rules, so that a file that exists is a complete, duplicate-free account of a run:

- records are written to ``FILE.partial`` while a ``generate_until`` call runs (flushed per
  batch: an interrupted run loses nothing) and moved into place when the call ends, so an
  interrupted run never leaves a ``FILE`` that looks complete;
- a ``FILE.partial`` left by an interrupted run is picked up by the next run with the same
  path (e.g. resumed with ``--use_cache``, which sends only the requests not yet cached): its
  records are kept unless the new run decodes the same (task, document) again, in which case
  the new record replaces the old one;
- an existing ``FILE`` is refused unless ``trajectory_mode`` says ``overwrite`` or ``append``
  (a second call of the same backend object appends to what its first call wrote).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

from lm_eval_temporal.record import TemporalRecord

__all__ = ["MODES", "check_path", "TrajectoryWriter"]

MODES = ("new", "overwrite", "append")


def check_path(value: str, mode: str = "new") -> Path:
    """The resolved ``trajectory_path`` after checking it can be written; raises ValueError
    naming the argument (before any model is loaded)."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError(f"trajectory_path={value!r}: is a folder; give a file name, e.g. {path / 'trajectories.jsonl'}")
    if path.exists() and mode == "new":
        raise ValueError(f"trajectory_path={value!r}: the file exists; pass trajectory_mode=overwrite to replace it "
                         "or trajectory_mode=append to add to it (or choose another file)")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"trajectory_path={value!r}: cannot create the folder {parent} ({exc.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise ValueError(f"trajectory_path={value!r}: the folder {parent} is not writable")
    return path


def _read(path: Path) -> list[TemporalRecord]:
    """The records of a file's complete lines (a line cut by an interrupt is dropped)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                try:
                    out.append(TemporalRecord.from_json(json.loads(line)))
                except ValueError:  # RecordError is a ValueError
                    continue
    return out


class TrajectoryWriter:
    """Writes the records of one backend object's ``generate_until`` calls (see the module docstring)."""

    def __init__(self, path: Path, mode: str = "new"):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.mode = mode
        self._calls = 0
        self._file: IO[str] | None = None
        self._carried: list[TemporalRecord] = []

    def __enter__(self) -> TrajectoryWriter:
        # What an interrupted run left behind is carried over (replaced where decoded again).
        self._carried = _read(self.partial) if self.partial.exists() else []
        self._file = self.partial.open("w", encoding="utf-8")
        self._written: set[tuple[str, str]] = set()
        return self

    def write(self, record: TemporalRecord) -> None:
        self._written.add(record.key)
        self._file.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        with self._file as f:
            # Kept in the partial file, so a failed or interrupted call can be resumed from it.
            for old in self._carried:
                if old.key not in self._written:
                    f.write(json.dumps(old.to_json(), ensure_ascii=False) + "\n")
        self._file = None
        if exc_type is not None:
            return
        if self._calls or self.mode == "append" and self.path.exists():
            with self.path.open("a", encoding="utf-8") as out, self.partial.open(encoding="utf-8") as new:
                out.write(new.read())
            self.partial.unlink()
        else:
            os.replace(self.partial, self.path)
        self._calls += 1
