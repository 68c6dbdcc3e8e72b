"""Reading a run's recorded per-step answers back, with each sample's gold answer, from either
file a run leaves:

- a ``trajectory_path`` file (JSON Lines, one :class:`TemporalRecord` per line, gold
  included); its ``.partial`` form starts with a settings header line
  (``{"llada_temporal_partial": ...}``), which is skipped, may hold a document twice (the newest
  line wins, as when the run finishes it) and may end with a line cut by a hard kill (skipped);
- an lm-eval samples file (``samples_<task>_<date>.jsonl``, written by ``--log_samples``): each
  response ends with its trace (:mod:`lm_eval_temporal.trace`), and the gold answer is in the
  document (:func:`lm_eval_temporal.trace.doc_marker`). A trace holds no step texts and no
  final text; the text returned (the response) is kept.

A folder stands for every ``samples_*.jsonl`` below it (an lm-eval ``--output_path``).
Everything that cannot be read or scored is an error naming the file and line: there is no
partial answer from a file that is not what it should be. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval_temporal import trace
from lm_eval_temporal.record import RecordError, TemporalRecord
from lm_eval_temporal.trajectory import HEADER

__all__ = ["RecordedError", "Recorded", "Source", "input_files", "read_file", "read_inputs"]

FORMATS = "a trajectory_path file or an lm-eval samples_<task>_*.jsonl file (--log_samples)"
# lm-eval names a samples file samples_<task>_<date>.jsonl; the task is nowhere else in it.
_SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_\d{4}-\d{2}-\d{2}T[0-9.\-]+\.jsonl$")


class RecordedError(ValueError):
    """An input cannot be read or scored (the message names the file, line and why)."""


@dataclass(frozen=True)
class Recorded:
    """One sample as recorded: its record (``task``, ``doc_id`` and ``gold`` set), the answer
    parser its gold is judged with (``tasks.process_results`` takes the document marker's; a
    trajectory record's own ``answer_task`` otherwise) and where it was read."""

    record: TemporalRecord
    scorer: str
    where: str


@dataclass
class Source:
    """One input file: its format (``trajectory`` or ``samples``), the samples kept and the
    lines skipped, each with why."""

    path: str
    kind: str = "trajectory"
    samples: int = 0
    skipped: list[str] = field(default_factory=list)


def input_files(items: Iterable[str | Path]) -> list[Path]:
    """The files to read: each item a file, or a folder standing for its ``samples_*.jsonl``."""
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(p.rglob("samples_*.jsonl"))
            if not found:
                raise RecordedError(f"{p}: a folder without lm-eval samples_<task>_*.jsonl files "
                                    "(run lm_eval with --log_samples, or give the file)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise RecordedError(f"{p}: no such file; expected {FORMATS}")
    return list(dict.fromkeys(out))


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def _traced(line: dict[str, Any]) -> tuple[str, TemporalRecord] | None:
    """The response lm-eval scored (``filtered_resps``; filter ``none`` keeps it whole) or, when
    a filter cut the trace off, the raw one (``resps``), split into text and record."""
    for response in (_first(line.get("filtered_resps")), _first(_first(line.get("resps")))):
        if isinstance(response, str):
            text, record = trace.split(response)
            if record is not None:
                return text, record
    return None


def _from_sample(line: dict[str, Any], task: str, where: str) -> Recorded:
    marker = trace.doc_marker(line["doc"])
    if marker is None or marker.gold is None:
        raise RecordedError(f"{where}: no gold answer: the document has no {trace.TRACE_KEY!r} marker with a 'gold' "
                            "(only lm-eval-temporal's tasks prepare one), so nothing can be scored")
    traced = _traced(line)
    if traced is None:
        raise RecordedError(f"{where}: the response carries no readable temporal trace (run the task with "
                            "--model llada_temporal or dllm_temporal, whose responses end with one)")
    text, record = traced
    # The response is the vote step's text, so it is the final text when that is the last step.
    final = text if record.vote_step == record.steps_run - 1 else None
    record = dataclasses.replace(record, task=task, doc_id=line.get("doc_id"), gold=marker.gold, response=text,
                                 final_text=final)
    return Recorded(record, marker.task, where)


def _from_record(line: dict[str, Any], where: str) -> Recorded:
    try:
        record = TemporalRecord.from_json(line, where)
    except RecordError as exc:
        raise RecordedError(str(exc)) from None
    if record.gold is None:
        raise RecordedError(f"{where}: no gold answer in the record: its document was not prepared by an "
                            "lm-eval-temporal task (only those carry one), so nothing can be scored")
    return Recorded(record, record.answer_task, where)


def _parse(line: Any, task: str, where: str, source: Source) -> Recorded | None:
    """One line's sample, or None for a settings header."""
    if isinstance(line, dict) and list(line) == [HEADER]:
        source.skipped.append(f"{where}: the settings header of a .partial file")
        return None
    if isinstance(line, dict) and "doc" in line and ("resps" in line or "filtered_resps" in line):
        source.kind = "samples"
        return _from_sample(line, task, where)
    if isinstance(line, dict) and "answers" in line:
        return _from_record(line, where)
    raise RecordedError(f"{where}: neither a trajectory record (no 'answers') nor an lm-eval sample "
                        f"(no 'doc' and 'resps'); expected {FORMATS}")


def read_file(path: Path) -> tuple[list[Recorded], Source]:
    """The samples of one file, one per document (see the module docstring for the rules)."""
    match = _SAMPLES_NAME.match(path.name)
    task = match["task"] if match else path.stem
    partial = path.name.endswith(".partial")
    source = Source(str(path))
    out: dict[tuple[str, str], Recorded] = {}
    try:
        with path.open(encoding="utf-8") as f:
            raw_lines = list(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordedError(f"{path}: cannot be read ({exc}); expected {FORMATS}") from None
    for i, raw in enumerate(raw_lines, 1):
        where = f"{path}:{i}"
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            if partial and not raw.endswith("\n"):  # a hard kill cut the run's last line
                source.skipped.append(f"{where}: a line cut by an interrupted run")
                continue
            raise RecordedError(f"{where}: not valid JSON ({exc}); expected {FORMATS}") from None
        sample = _parse(line, task, where, source)
        if sample is None:
            continue
        key = sample.record.key
        if key in out:
            if not partial:
                raise RecordedError(f"{where}: task {key[0]} document {key[1]} is also at {out[key].where}")
            source.skipped.append(f"{out[key].where}: replaced by the newer line {i} of the same document")
        out[key] = sample
    if not out:
        raise RecordedError(f"{path}: no samples in the file; expected {FORMATS}")
    source.samples = len(out)
    return list(out.values()), source


def read_inputs(items: Iterable[str | Path]) -> tuple[list[Recorded], list[Source]]:
    """The samples of every input, refusing a document read twice (two runs, or a run's samples
    file and its trajectory file, mixed into one set of metrics)."""
    seen: dict[tuple[str, str], Recorded] = {}
    sources = []
    for path in input_files(items):
        samples, source = read_file(path)
        sources.append(source)
        for s in samples:
            key = s.record.key
            if key in seen:
                raise RecordedError(f"{s.where}: task {key[0]} document {key[1]} is also at {seen[key].where}; "
                                    "give the files of one run, and only one file per document")
            seen[key] = s
    return list(seen.values()), sources
