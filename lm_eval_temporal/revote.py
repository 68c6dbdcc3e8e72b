"""Re-voting without a model: ``lm-eval-temporal revote FILE ... --vote exp [--alpha A]``.

A run records every step's answer (:mod:`lm_eval_temporal.recorded` reads them back), and the
vote and TSE are functions of those answers only, so another vote (weighting, alpha, clusters,
the gated vote's window and share, TSE's settings) costs no forward pass. Each record is
re-voted by :func:`lm_eval_temporal.pipeline.make_record`, the function a live run calls, on
its own horizon (``steps``) and schedule (``schedule_steps``), so a re-vote equals a live run
with the same settings exactly (tests/test_revote.py). The metrics are the task metrics
(``tasks.process_results``) with one difference:

- ``exact_match`` here is the verdict on the voted *answer* (``metrics.score(...).vote_pass``;
  the final answer's with ``vote=none``), whereas a live run scores the returned *text*
  (``answers.is_correct(text, ...)``), and a re-vote does not have every step's text. The two
  agree whenever the returned text's answer is the voted answer or one equivalent to it, which
  is how the vote picks the text (the latest step of the winning cluster): on arith_chain
  (300 documents, votes none/exp/fixed) they agree on every document. They can differ only where
  the checker's equivalence is not transitive, or where a text holds no answer the parser
  finds but is itself a bare answer (``is_correct`` accepts ``\\frac{1}{2}`` alone).

``--protocol`` other than the recorded one re-reads every step's text with
``answers.extract_answer`` (it needs ``trajectory_text=true``). Texts recorded under the
``default`` protocol are cut at the end-of-answer token, while a live ``paper`` run decodes the
whole canvas: the two agree where nothing after that token changes the answer. Early-stopped
rows keep the steps they ran: their stopping step was chosen under the recorded settings
(a note says how many). Torch is imported with the pipeline; no model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_temporal import answers, metrics
from lm_eval_temporal.coerce import coerce_fields
from lm_eval_temporal.config import TemporalConfig
from lm_eval_temporal.pipeline import make_record
from lm_eval_temporal.recorded import Recorded, RecordedError, Source, read_inputs
from lm_eval_temporal.record import TemporalRecord
from lm_eval_temporal.tasks import tokens_per_forward

__all__ = ["SCHEMA", "SCHEMA_VERSION", "SETTINGS", "RevoteError", "Row", "Report", "parse_settings", "parse_sweep",
           "step_answers", "revote_record", "task_rows", "revote", "format_table", "revote_from_cli"]

SCHEMA, SCHEMA_VERSION = "lm-eval-temporal/revote", 1
# The TemporalConfig fields that act after decoding, so a re-vote can change them (early stop's
# act during decoding: not here).
SETTINGS = ("vote", "alpha", "cluster", "protocol", "tse_alpha", "tse_skip", "gate_window", "gate_share")
METRICS = ("exact_match", "final_pass", "ever_pass", "vote_gain", "tse", "tpf", "steps_saved", "nfe")
SHOWN = ("exact_match", "final_pass", "ever_pass", "vote_gain", "tse", "tpf")
MISSING = "\u2014"  # the leaderboard's display rule: a missing value is an em dash, never zero


class RevoteError(ValueError):
    """Settings or inputs a re-vote cannot use (the message names which and why)."""


def parse_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Raw settings (``{"alpha": "5"}``) typed and checked by :class:`TemporalConfig`'s rules.
    ``protocol`` left out (or None) means each record's own."""
    given = {k: v for k, v in values.items() if v is not None}
    bad = sorted(set(given) - set(SETTINGS))
    if bad:
        raise RevoteError(f"revote cannot change {', '.join(bad)}; it changes {', '.join(SETTINGS)}")
    return coerce_fields(TemporalConfig, given, where="revote: ", unknown_label="revote: unknown settings {names}",
                         error=RevoteError)


def parse_sweep(spec: str, settings: dict[str, Any]) -> tuple[str, list[Any]]:
    """``alpha=0,1,2,5,10`` -> ("alpha", [0.0, 1.0, 2.0, 5.0, 10.0]), each value checked."""
    key, sep, values = spec.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or key not in SETTINGS or not values.strip():
        raise RevoteError(f"--sweep {spec!r}: expected KEY=V1,V2,... with KEY one of {', '.join(SETTINGS)}")
    if key == "alpha" and settings.get("vote", "exp") not in ("exp", "gated"):
        raise RevoteError(f"--sweep alpha: alpha weights the exp and gated votes only; with --vote {settings['vote']} "
                          "every alpha gives the same row")
    return key, [parse_settings({key: v.strip()})[key] for v in values.split(",")]


def _config(record: TemporalRecord, settings: dict[str, Any]) -> TemporalConfig:
    return TemporalConfig(**{"protocol": record.protocol, **settings})


def step_answers(sample: Recorded, protocol: str) -> list[str | None]:
    """The record's per-step answers under ``protocol``: as recorded under its own protocol,
    else re-read from its step texts by the live run's parser."""
    record = sample.record
    if protocol == record.protocol:
        return list(record.answers)
    if record.step_texts is None:
        raise RevoteError(f"{sample.where}: --protocol {protocol} re-reads every step's text, but the record "
                          f"(protocol {record.protocol}) holds none: run with --model_args trajectory_text=true "
                          "and revote its trajectory_path file")
    if len(record.step_texts) != record.steps_run:
        raise RevoteError(f"{sample.where}: {len(record.step_texts)} step texts for {record.steps_run} steps")
    return [answers.extract_answer(t, record.answer_task, protocol) for t in record.step_texts]


def revote_record(sample: Recorded, settings: dict[str, Any]) -> TemporalRecord:
    """The record a live run with ``settings`` would have made from the same steps."""
    old = sample.record
    cfg = _config(old, settings)
    if old.step_texts is not None:
        texts = old.step_texts
    else:  # the vote needs no text; the ones known are kept for the record's response
        texts = [None] * old.steps_run
        texts[old.vote_step] = old.response
        if old.final_text is not None:
            texts[-1] = old.final_text
    new = make_record(step_answers(sample, cfg.protocol), texts, cfg, task=old.answer_task, steps=old.steps,
                      schedule_steps=old.schedule_steps, keep_texts=old.step_texts is not None)
    return dataclasses.replace(new, task=old.task, doc_id=old.doc_id, gold=old.gold, tokens=old.tokens, nfe=old.nfe)


@dataclass(frozen=True)
class Row:
    """One task's metrics under one set of settings (``protocol``: the protocols the records
    were scored under)."""

    task: str
    settings: dict[str, Any]
    n: int
    metrics: dict[str, float | None]

    def as_json(self) -> dict[str, Any]:
        return {"task": self.task, "settings": self.settings, "n": self.n, **self.metrics}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)  # lm-eval's ``mean`` aggregation, so the numbers match its results


def task_rows(pairs: Sequence[tuple[Recorded, TemporalRecord]], settings: dict[str, Any]) -> list[Row]:
    """Per task (in first-seen order), the task metrics of the re-voted records."""
    by_task: dict[str, list[tuple[Recorded, TemporalRecord]]] = {}
    for sample, new in pairs:
        by_task.setdefault(str(new.task), []).append((sample, new))
    rows = []
    for task, group in by_task.items():
        scores = [metrics.score(new, new.gold, task=sample.scorer) for sample, new in group]
        records = [new for _, new in group]
        m = {
            "exact_match": _mean([float(s.vote_pass) for s in scores]),
            "final_pass": _mean([float(s.final_pass) for s in scores]),
            "ever_pass": _mean([float(s.ever_pass) for s in scores]),
            "tse": _mean([float(s.tse) for s in scores]),
            "steps_saved": _mean([r.steps_saved for r in records]),
        }
        m["vote_gain"] = m["exact_match"] - m["final_pass"]
        counted = [r for r in records if r.nfe is not None]
        m["nfe"] = _mean([float(r.nfe) for r in counted]) if counted else None
        tpf = tokens_per_forward([(r.tokens or 0, r.nfe or 0) for r in records])
        m["tpf"] = None if math.isnan(tpf) else tpf
        shown = {k: v for k, v in dataclasses.asdict(TemporalConfig(**settings)).items() if k in SETTINGS}
        shown["protocol"] = ",".join(sorted({r.protocol for r in records}))
        rows.append(Row(task, shown, len(group), {k: m[k] for k in METRICS}))
    return rows


@dataclass
class Report:
    """What a re-vote found: its inputs, one row per task and setting, the re-voted records
    (without ``--sweep``) and notes on what the numbers cannot say."""

    sources: list[Source]
    rows: list[Row]
    records: list[TemporalRecord] | None
    notes: list[str]
    sweep: tuple[str, list[Any]] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "files": [dataclasses.asdict(s) for s in self.sources],
            "sweep": None if self.sweep is None else {"key": self.sweep[0], "values": self.sweep[1]},
            "rows": [r.as_json() for r in self.rows],
            "notes": self.notes,
        }


def _notes(pairs: Sequence[tuple[Recorded, TemporalRecord]], settings: dict[str, Any]) -> list[str]:
    notes = []
    stopped = sum(1 for s, _ in pairs if s.record.steps_run < s.record.steps)
    if stopped:
        notes.append(f"{stopped} records stopped early: they keep the steps they ran, whose end the recorded "
                     "early-stop settings chose (a live run with these settings could stop elsewhere)")
    reread = sum(1 for s, new in pairs if new.protocol != s.record.protocol)
    if reread:
        notes.append(f"{reread} records re-read from their step texts under another protocol; texts recorded under "
                     "protocol default are cut at the end-of-answer token, a live paper run reads the whole canvas")
    # TSE depends on the answers, the clusters and TSE's own settings only: on the same answers,
    # a difference from the recorded value means the run used other settings than these.
    tse = sum(1 for s, new in pairs
              if new.protocol == s.record.protocol and not math.isnan(s.record.tse) and new.tse != s.record.tse)
    if tse:
        cfg = TemporalConfig(**{k: v for k, v in settings.items() if k != "protocol"})
        notes.append(f"TSE differs from the recorded value in {tse} records: the run's cluster, tse_alpha or tse_skip "
                     f"were not these (cluster={cfg.cluster}, tse_alpha={cfg.tse_alpha:g}, tse_skip={cfg.tse_skip:g})")
    return notes


def revote(files: Sequence[str | Path], settings: dict[str, Any], sweep: tuple[str, list[Any]] | None = None) -> Report:
    """Re-vote every sample of ``files`` (see :func:`lm_eval_temporal.recorded.read_inputs`)
    under ``settings`` (:func:`parse_settings`), or once per value of a ``sweep``."""
    try:
        samples, sources = read_inputs(files)
    except RecordedError as exc:
        raise RevoteError(str(exc)) from None
    runs = [settings] if sweep is None else [{**settings, sweep[0]: v} for v in sweep[1]]
    rows, notes, records = [], [], None
    for run in runs:
        pairs = [(s, revote_record(s, run)) for s in samples]
        rows.extend(task_rows(pairs, run))
        notes.extend(n for n in _notes(pairs, run) if n not in notes)
        records = [new for _, new in pairs]
    skipped = [line for s in sources for line in s.skipped]
    if skipped:
        notes.append(f"{len(skipped)} lines skipped: " + "; ".join(skipped))
    return Report(sources, rows, records if sweep is None else None, notes, sweep)


def _cell(value: Any, digits: str = ".4f") -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return MISSING
    return format(value, digits) if isinstance(value, float) else str(value)


def format_table(report: Report) -> str:
    """A Markdown table: one row per task and setting."""
    keys = ["vote", "alpha", "cluster", "protocol"]
    if report.sweep is not None and report.sweep[0] not in keys:
        keys.append(report.sweep[0])
    head = ["task", *keys, "n", *SHOWN]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in report.rows:
        cells = [r.task, *(_cell(r.settings[k], "g") for k in keys), str(r.n), *(_cell(r.metrics[m]) for m in SHOWN)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [f"note: {n}" for n in report.notes])


def _write(path: str, text: str) -> None:
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


def _check_outputs(inputs: Sequence[str], output: str | None, report: str | None) -> None:
    """Refuse, before anything is read, an output that names an input, and a ``--json`` PATH
    that is not a ``.json`` name: ``--json FILE ...`` takes FILE as the PATH, and a recorded run
    must never be overwritten by a report."""
    if report and report != "-" and not report.endswith(".json"):
        raise RevoteError(f"--json {report}: expected a .json file name (the report is one JSON document); "
                          "give --json after the files")
    ins = {Path(p).expanduser().resolve() for p in inputs}
    for out in (output, report):
        if out and out != "-" and Path(out).expanduser().resolve() in ins:
            raise RevoteError(f"{out} is an input; the output would overwrite it (name another file)")


def revote_from_cli(args: Any) -> int:
    """``lm-eval-temporal revote`` (arguments parsed by :mod:`lm_eval_temporal.cli`); the exit code."""
    try:
        settings = parse_settings({k: getattr(args, k) for k in SETTINGS})
        sweep = parse_sweep(args.sweep, settings) if args.sweep else None
        if sweep is not None and args.output:
            raise RevoteError("-o writes one set of re-voted records; not with --sweep")
        _check_outputs(args.file, args.output, args.json)
        report = revote(args.file, settings, sweep)
        if args.output:
            _write(args.output, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in report.records))
        doc = json.dumps(report.as_json(), indent=1, ensure_ascii=False) + "\n"
        if args.json and args.json != "-":
            _write(args.json, doc)
    except (RevoteError, OSError) as exc:
        print(f"lm-eval-temporal revote: error: {exc}", file=sys.stderr)
        return 2
    print(doc, end="") if args.json == "-" else print(format_table(report))
    return 0
