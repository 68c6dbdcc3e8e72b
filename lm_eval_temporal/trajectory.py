"""The ``trajectory_path`` file: one :class:`TemporalRecord` line per (task, document).

Integrity rules, so that a file that exists is a complete, duplicate-free account of a run, and
no record a run produced is lost to an interrupt, even a hard one (SIGKILL, the OOM killer):

- records are appended to ``FILE.partial`` while a ``generate_until`` call runs (flushed per
  batch) and moved into place when the call ends, so an interrupted run never leaves a ``FILE``
  that looks complete;
- a ``FILE.partial`` left by an interrupted run is picked up by the next run with the same
  path (e.g. resumed with ``--use_cache``, which sends only the requests not yet cached). It is
  only ever appended to, never rewritten, so the records of earlier runs stay on disk at every
  moment; when the call ends, the records are de-duplicated by (task, document), the newest
  record of a document winning (a document decoded again replaces its old record);
- the first line of ``FILE.partial`` is a header holding the run's settings stamp
  (:class:`~lm_eval_temporal.run_info.Stamp`: settings, weights and code). A partial left by a
  run with another stamp (or with none) is not merged: it is set aside, renamed
  ``FILE.partial.<its fingerprint>.stale`` (``unknown`` when it has no header), with a warning
  naming the file and what differs, and the run starts a fresh partial;
- an existing ``FILE`` is refused unless ``trajectory_mode`` says ``overwrite`` or ``append``
  (a second call of the same backend object appends to what its first call wrote).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import IO, Any

from lm_eval_temporal.record import TemporalRecord
from lm_eval_temporal.run_info import Stamp

log = logging.getLogger("lm_eval.models.llada_temporal")

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


HEADER = "llada_temporal_partial"  # the key of a partial file's first line


def _lines(path: Path) -> list[str]:
    """A file's complete lines (a line cut by an interrupt is dropped)."""
    with path.open(encoding="utf-8") as f:
        return [line for line in f if line.endswith("\n") and line.strip()]


def _header(path: Path) -> dict[str, Any] | None:
    """The stamp in a partial file's first line, or None when it has none."""
    with path.open(encoding="utf-8") as f:
        first = f.readline()
    try:
        data = json.loads(first) if first.endswith("\n") else None
    except ValueError:
        return None
    return data.get(HEADER) if isinstance(data, dict) else None


def _newest_per_key(lines: list[str]) -> list[str]:
    """The record lines, one per (task, document): the last one written wins, in the order the
    documents were first written. Lines that are not records (the header) are dropped."""
    out: dict[tuple[str, str], str] = {}
    for line in lines:
        try:
            out[TemporalRecord.from_json(json.loads(line)).key] = line
        except ValueError:  # RecordError is a ValueError; the header is not a record
            continue
    return list(out.values())


def _has_lines(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _ends_line(path: Path) -> bool:
    """Whether a non-empty file ends with a newline (a hard kill can cut its last line)."""
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _free_name(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``... whichever does not exist yet."""
    n, out = 0, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.name}.{n}")
    return out


class TrajectoryWriter:
    """Writes the records of one backend object's ``generate_until`` calls (see the module
    docstring); ``stamp`` is the run's settings stamp for ``generate_until``."""

    def __init__(self, path: Path, mode: str, stamp: Stamp):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.mode = mode
        self.stamp = stamp
        self._calls = 0
        self._file: IO[str] | None = None

    def __enter__(self) -> TrajectoryWriter:
        if _has_lines(self.partial):
            self._set_aside_if_other()
        resumed = _has_lines(self.partial)
        self._file = self.partial.open("a", encoding="utf-8")
        if not resumed:
            self._file.write(json.dumps({HEADER: self.stamp.as_json()}) + "\n")
        elif not _ends_line(self.partial):
            self._file.write("\n")  # end a line cut by a hard kill, so the next record starts its own
        self._file.flush()
        return self

    def _set_aside_if_other(self) -> None:
        """Rename a partial left under another stamp (or none) out of the way, with a warning."""
        theirs = _header(self.partial)
        if theirs is not None and theirs.get("fingerprint") == self.stamp.fingerprint:
            return
        aside = _free_name(self.partial.with_name(
            f"{self.partial.name}.{theirs.get('fingerprint') if theirs else 'unknown'}.stale"))
        os.replace(self.partial, aside)
        what = self.stamp.differences(theirs["settings"]) if theirs else "no settings header (an older version)"
        log.warning("trajectory_path: %s was left by a run with %s; its records are not merged into this run's "
                    "and were set aside as %s", self.partial, what, aside)

    def write(self, record: TemporalRecord) -> None:
        self._file.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._file = None
        if exc_type is not None:
            return  # the partial holds every record so far, for a resumed run
        records = _newest_per_key(_lines(self.partial))
        appending = self._calls or self.mode == "append" and self.path.exists()
        # Built beside FILE and moved into place at once: FILE is never half written.
        staged = self.path.with_name(self.path.name + ".tmp")
        if appending:
            shutil.copyfile(self.path, staged)
        else:
            staged.write_bytes(b"")
        with staged.open("a", encoding="utf-8") as out:
            if _has_lines(staged) and not _ends_line(staged):
                out.write("\n")
            out.writelines(records)
        os.replace(staged, self.path)
        self.partial.unlink()
        self._calls += 1
