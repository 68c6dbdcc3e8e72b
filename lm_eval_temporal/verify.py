"""``lm-eval-temporal verify RESULTS_DIR``: re-check a run from its files, without the model.

For each lm-eval results file under the folder (``results_<date>.json``, with its
``samples_<task>_<date>.jsonl`` and the sidecar ``run_record_<date>.json``):

- every metric the results report is derived again from the samples: each sample's metrics by
  the task's own ``process_results`` (:func:`lm_eval_temporal.tasks.process_results`), each
  trace's vote and TSE from its per-step answers by :func:`~lm_eval_temporal.pipeline.make_record`,
  then lm-eval's aggregation (mean; ``tpf`` a ratio of sums); the vote gain is exact_match -
  final_pass; a group's metrics from its subtasks'. Each must equal what was reported within
  :data:`TOLERANCE`;
- the run record is complete (:func:`lm_eval_temporal.run_record.missing_fields`);
- one protocol and one vote method across tasks (and across the runs in the folder);
- each task's samples cover its whole document set (``n-samples``), unless ``allow_limit``;
- the sidecar's sha256 of the results, samples and trajectory files match the files.

:func:`verify_run` returns a :class:`Report`; each problem is one line naming the file, the
task and what differs. Torch is only needed for :func:`make_record`'s imports.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lm_eval_temporal import run_record, sidecar, trace
from lm_eval_temporal.record import TemporalRecord

__all__ = ["TOLERANCE", "TaskCheck", "RunCheck", "Report", "verify_run"]

TOLERANCE = 1e-9
MAX_LINES = 3  # per task and check: the first few differing samples, then a count


@dataclasses.dataclass
class TaskCheck:
    """One task of a run, as re-derived from its samples: ``metrics`` by lm-eval key
    (``exact_match,none``) plus ``vote_gain,<filter>``; ``documents``: lm-eval's
    ``n-samples`` original (None where not recorded)."""

    task: str
    samples: int
    documents: int | None
    metrics: dict[str, float]
    protocol: str | None
    method: str | None
    tokens: int = 0  # summed over the traces (one filter): the run's efficiency block counts the same
    forward_passes: int = 0


@dataclasses.dataclass
class RunCheck:
    """One results file: its tasks re-derived, its run record and its problems."""

    results_file: Path
    tasks: dict[str, TaskCheck]
    record: dict[str, Any]
    problems: list[str]


@dataclasses.dataclass
class Report:
    """What :func:`verify_run` found: every problem (one line each) and each run's checks."""

    results_dir: Path
    runs: list[RunCheck]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "results_dir": str(self.results_dir), "problems": self.problems,
                "runs": [{"results_file": str(r.results_file), "problems": r.problems,
                          "tasks": {t: dataclasses.asdict(c) for t, c in r.tasks.items()}} for r in self.runs]}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= TOLERANCE
    return a == b


def _read_samples(path: Path, task: str, problems: list[str]) -> list[dict[str, Any]]:
    lines = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(f"{task}: {path.name} line {n} is not JSON ({exc.msg})")
    return lines


def _cap(problems: list[str], found: list[str], what: str) -> None:
    problems.extend(found[:MAX_LINES])
    if len(found) > MAX_LINES:
        problems.append(f"{what}: {len(found) - MAX_LINES} more like these")


def _temporal_config(record: Mapping[str, Any]):
    from lm_eval_temporal.config import TemporalConfig

    fields = dict(record.get("temporal") or {})
    if "stop_gap" in fields:
        fields["stop_gap"] = tuple(fields["stop_gap"])
    return TemporalConfig(**fields)


def _trace_problems(task: str, doc_id: Any, rec: TemporalRecord, cfg) -> list[str]:
    """Whether a trace's vote and TSE follow from its own per-step answers under the run's
    temporal settings (make_record: the one place they are computed)."""
    from lm_eval_temporal.pipeline import make_record

    again = make_record(rec.answers, [""] * rec.steps_run, cfg, task=rec.answer_task, steps=rec.steps,
                        schedule_steps=rec.schedule_steps)
    out = []
    for name in ("final", "vote", "vote_step", "tse", "method", "protocol"):
        if not _close(getattr(rec, name), getattr(again, name)):
            out.append(f"{task}: doc_id {doc_id}: trace {name}={getattr(rec, name)!r} but its per-step answers "
                       f"give {getattr(again, name)!r}")
    return out


def _aggregate(metric: str, values: list[Any]) -> float:
    from lm_eval_temporal.tasks import tokens_per_forward

    if metric == "tpf":
        return tokens_per_forward([tuple(v) for v in values])
    return sum(values) / len(values) if values else math.nan


def _check_task(task: str, lines: list[dict[str, Any]], results: Mapping[str, Any], cfg,
                problems: list[str]) -> TaskCheck:
    """Re-derive one task's metrics from its sample lines and compare with the results."""
    from lm_eval_temporal.tasks import process_results

    reported = results.get("results", {}).get(task, {})
    per_filter: dict[str, dict[str, list[Any]]] = {}
    sample_diffs, trace_diffs, protocols, methods = [], [], set(), set()
    for line in lines:
        doc, resps, filt = line.get("doc"), line.get("filtered_resps") or [], line.get("filter", "none")
        if trace.doc_marker(doc) is None or not resps:  # not our task: its logged per-sample values stand
            values = {m: line[m] for m in line.get("metrics", []) if m in line}
        else:
            values = process_results(doc, [resps[0]])
            rec = trace.split(resps[0])[1]
            if rec is not None:
                protocols.add(rec.protocol)
                methods.add(rec.method)
                trace_diffs.extend(_trace_problems(task, line.get("doc_id"), rec, cfg))
            for m, v in values.items():
                if m in line and not _close(list(v) if isinstance(v, tuple) else v, line[m]):
                    sample_diffs.append(f"{task}: doc_id {line.get('doc_id')}: sample {m}={line[m]!r} but "
                                        f"process_results gives {v!r}")
        for m, v in values.items():
            per_filter.setdefault(filt, {}).setdefault(m, []).append(v)
    _cap(problems, sample_diffs, f"{task}: per-sample metrics")
    _cap(problems, trace_diffs, f"{task}: traces")
    metrics: dict[str, float] = {}
    for filt, by_metric in per_filter.items():
        for m, values in by_metric.items():
            key = f"{m},{filt}"
            metrics[key] = again = _aggregate(m, values)
            if key not in reported:
                problems.append(f"{task}: the results report no {key} although the samples score it")
            elif not _close(reported[key], again):
                problems.append(f"{task}: reported {key}={reported[key]!r} but the samples give {again!r}")
        if "exact_match" in by_metric and "final_pass" in by_metric:
            metrics[f"vote_gain,{filt}"] = metrics[f"exact_match,{filt}"] - metrics[f"final_pass,{filt}"]
    documents = results.get("n-samples", {}).get(task, {}).get("original")
    pairs = next(iter(per_filter.values()), {}).get("tpf", [])
    return TaskCheck(task, len({json.dumps(line.get("doc_id")) for line in lines}), documents, metrics,
                     protocols.pop() if len(protocols) == 1 else None, methods.pop() if len(methods) == 1 else None,
                     sum(t for t, _ in pairs), sum(n for _, n in pairs))


def _group_problems(results: Mapping[str, Any], tasks: Mapping[str, TaskCheck]) -> list[str]:
    """A group's reported metrics (``temporal_math``) from its subtasks' re-derived ones: the
    mean weighted by documents (``weight_by_size``) or, failing that, the plain mean."""
    out = []
    for group, subtasks in (results.get("group_subtasks") or {}).items():
        checks = [tasks.get(t) for t in subtasks]
        if not subtasks or None in checks:
            continue
        for key, value in (results.get("results", {}).get(group) or {}).items():
            if "," not in key or "_stderr" in key or not all(key in c.metrics for c in checks):
                continue
            sizes = [c.samples for c in checks]
            weighted = sum(c.metrics[key] * n for c, n in zip(checks, sizes)) / sum(sizes)
            plain = sum(c.metrics[key] for c in checks) / len(checks)
            if not (_close(value, weighted) or _close(value, plain)):
                out.append(f"{group}: reported {key}={value!r} but its subtasks give {weighted!r} "
                           f"(weighted by size; {plain!r} unweighted)")
    return out


def _efficiency_problems(record: Mapping[str, Any], tasks: Mapping[str, TaskCheck]) -> list[str]:
    """The run's token and forward-pass totals (what tpf and tokens per second divide) are the
    traces' sums; checked on one process only (with several ranks the block is rank 0's)."""
    eff = record.get("efficiency") or {}
    if eff.get("device_count", 1) != 1 or not any(c.forward_passes for c in tasks.values()):
        return []
    out = []
    for name, summed in (("tokens", sum(c.tokens for c in tasks.values())),
                         ("forward_passes", sum(c.forward_passes for c in tasks.values()))):
        if eff.get(name) != summed:
            out.append(f"efficiency: {name}={eff.get(name)!r} but the samples' traces sum to {summed} (answers "
                       "served by --use_cache, or edited numbers): its tpf and tokens per second do not measure them")
    if eff.get("forward_passes") and not _close(eff.get("tpf"), eff["tokens"] / eff["forward_passes"]):
        out.append(f"efficiency: tpf={eff.get('tpf')!r} is not tokens / forward_passes")
    return out


def _coverage(task: str, lines: list[dict[str, Any]], results: Mapping[str, Any], allow_limit: bool) -> list[str]:
    """Each document once (per filter), as many as lm-eval evaluated, and all of them unless a
    limit is allowed."""
    counts = results.get("n-samples", {}).get(task)
    if not counts:
        return [f"{task}: the results JSON has no n-samples entry"]
    out = []
    by_filter: dict[str, list[str]] = {}
    for line in lines:
        by_filter.setdefault(line.get("filter", "none"), []).append(json.dumps(line.get("doc_id")))
    for filt, ids in sorted(by_filter.items()) or [("none", [])]:
        if len(set(ids)) != len(ids):
            out.append(f"{task}: {len(ids) - len(set(ids))} doc_id(s) appear twice in the samples (filter {filt})")
        if len(set(ids)) != counts.get("effective"):
            out.append(f"{task}: the samples hold {len(set(ids))} documents but n-samples effective="
                       f"{counts.get('effective')} (missing or extra sample lines)")
    if counts.get("effective") != counts.get("original") and not allow_limit:
        out.append(f"{task}: a limited run: {counts.get('effective')} of {counts.get('original')} documents "
                   "evaluated (--limit or --samples); pass --allow-limit to accept a smoke run")
    return out


def _hash_problems(results_file: Path, tasks: list[str]) -> list[str]:
    """The sidecar exists, lists every samples file, and each sha256 matches its file."""
    path = sidecar.sidecar_for(results_file)
    if not path.is_file():
        return [f"no sidecar {path.name}: the run was not written by lm_eval with lm_eval_temporal's hook, "
                "so its files cannot be checked against their hashes"]
    data = json.loads(path.read_text(encoding="utf-8"))
    out = [f"sidecar {path.name} lists no samples file for {t}" for t in tasks if t not in data.get("samples", {})]
    entries = [data.get("results", {}), *data.get("samples", {}).values(), *data.get("trajectories", [])]
    for entry in entries:
        file = results_file.parent / entry.get("file", "")
        if not file.is_file():
            out.append(f"{entry.get('file')}: listed in {path.name} but missing")
        elif run_record.file_sha256(file) != entry.get("sha256"):
            out.append(f"{entry.get('file')}: sha256 differs from {path.name} (the file changed after the run)")
    return out


def _check_run(results_file: Path, allow_limit: bool) -> RunCheck:
    problems: list[str] = []
    results = json.loads(results_file.read_text(encoding="utf-8"))
    record = run_record.resolve_or(results, "/config/llada_temporal", {})
    if not record:
        return RunCheck(results_file, {}, {}, ["not a llada_temporal run (no config.llada_temporal)"])
    problems.extend(run_record.missing_fields(results))
    if results.get("config", {}).get("limit") is not None and not allow_limit:
        problems.append(f"run: --limit {results['config']['limit']} was set; pass --allow-limit to accept a smoke run")
    try:
        cfg = _temporal_config(record)
    except (TypeError, ValueError) as exc:  # a newer package's settings, or edited ones
        return RunCheck(results_file, {}, record, [*problems, f"config.llada_temporal.temporal cannot be read: {exc}"])
    tasks, date = {}, sidecar.date_of(results_file)
    for task in results.get("configs", {}):
        path = results_file.parent / f"samples_{task}_{date}.jsonl"
        if not path.is_file():
            problems.append(f"{task}: no samples file {path.name} (run lm_eval with --log_samples)")
            continue
        lines = _read_samples(path, task, problems)
        tasks[task] = _check_task(task, lines, results, cfg, problems)
        problems.extend(_coverage(task, lines, results, allow_limit))
    for task, check in tasks.items():
        if check.protocol not in (None, cfg.protocol) or check.method not in (None, cfg.vote):
            problems.append(f"{task}: traces use protocol={check.protocol}, vote={check.method} but the run's "
                            f"settings say protocol={cfg.protocol}, vote={cfg.vote}")
    if len({(c.protocol, c.method) for c in tasks.values() if c.protocol}) > 1:
        problems.append("protocol differs across tasks: " + ", ".join(
            f"{t}: protocol={c.protocol} vote={c.method}" for t, c in sorted(tasks.items())))
    problems.extend(_group_problems(results, tasks))
    problems.extend(_efficiency_problems(record, tasks))
    problems.extend(_hash_problems(results_file, list(results.get("configs", {}))))
    return RunCheck(results_file, tasks, record, problems)


def verify_run(results_dir: str | Path, *, allow_limit: bool = False) -> Report:
    """Check every run (results file) under ``results_dir``; see the module docstring."""
    root = Path(results_dir)
    files = sorted(p for p in root.rglob("results_*.json") if p.is_file()) if root.is_dir() else []
    if not files:
        return Report(root, [], [f"{root}: no lm-eval results_*.json file found"])
    runs = [_check_run(p, allow_limit) for p in files]
    problems = [f"{r.results_file.relative_to(root)}: {p}" for r in runs for p in r.problems]
    return Report(root, runs, problems)
