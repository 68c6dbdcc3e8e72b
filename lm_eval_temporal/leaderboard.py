"""``lm-eval-temporal leaderboard DIR... -o OUT``: many lm-eval runs as one table.

Input: lm-eval output folders (``--output_path``), searched recursively for ``results_*.json``
(lm-eval writes them in one folder per model). Each results file is a run.

Rows are models: a checkpoint (``config.llada_temporal.checkpoint``: pretrained, revision and
hub commit, weights sha256, adapter) with the model arguments that act on its answers
(:func:`lm_eval_temporal.run_info.acting_settings`). Runs of one model on different tasks fill
one row; when two runs of a row cover one task, the latest (lm-eval's ``date``) is shown and a
note says so. Runs of other backends (an ``hf`` baseline on these tasks) are rows keyed by
``config.model`` and ``config.model_args``.

Columns are tasks (with the filter when it is not ``none``), each with exact_match (the vote's
answer), final-pass, ever-pass, vote gain (exact_match - final_pass), TSE and tpf, read from
the results keys (``"exact_match,none"``). A value the run did not record (NaN, ``N/A``, or a
metric an older run lacks, such as tpf) is missing: ``—`` in Markdown and HTML, an empty cell in
the CSV, never 0.

Nothing is mixed silently: each row shows its protocol and whether its runs passed
``lm-eval-temporal verify`` (an "unverified" badge with the reason), and a note at the top names
each task column that holds rows of more than one protocol, or unverified rows.

Written to OUT: ``leaderboard.md``, ``leaderboard.csv`` (scores as fractions, as lm-eval writes
them) and ``leaderboard.html`` (one self-contained page: inline CSS, a few lines of inline
JavaScript to sort by a column, no network assets). The HTML is in
:mod:`lm_eval_temporal.leaderboard_html`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lm_eval_temporal.errors import UserError

__all__ = ["METRICS", "MISSING", "FIELDS", "Verdict", "Cell", "Row", "Board", "LeaderboardError", "find_results",
           "verify_folder", "read_run", "build", "to_markdown", "to_csv", "write", "leaderboard"]

# (name in the results JSON, short header); vote_gain is derived, the others are lm-eval metrics.
METRICS = (("exact_match", "EM"), ("final_pass", "final"), ("ever_pass", "ever"), ("vote_gain", "gain"),
           ("tse", "TSE"), ("tpf", "tpf"))
MISSING = "—"  # the dLLM leaderboard's display rule: a missing value is an em dash, never 0
FIELDS = ("model", "family", "protocol", "vote", "schedule", "settings", "status")  # the columns naming a row
FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.html")
_SHOWN = {"pretrained", "revision", "peft", "family", "protocol", "vote", "gen_length", "steps", "block_length",
          "temperature"}  # acting settings with a column of their own (the rest go to "settings" when not default)
_ALPHA_VOTES = ("exp", "gated")  # alpha is exp's rate; gated falls back to the exp-weighted vote


class LeaderboardError(UserError, ValueError):
    """A folder without results files, or a results file that cannot be read."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a run passed ``verify`` and, when not, why (one line per problem)."""

    verified: bool
    problems: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One task of one row: the metric values (None: not recorded), the run they come from and
    its schedule and sample count."""

    values: dict[str, float | None]
    run: str
    schedule: str
    samples: str
    verified: bool


@dataclasses.dataclass
class Row:
    """One model: what names it (``FIELDS`` but status), its runs' verdicts and its cells by column."""

    key: str
    fields: dict[str, str]
    cells: dict[str, Cell] = dataclasses.field(default_factory=dict)
    unverified: dict[str, Verdict] = dataclasses.field(default_factory=dict)  # by results file

    @property
    def verified(self) -> bool:
        return not self.unverified

    @property
    def problems(self) -> list[str]:
        """Why the row is not verified; each problem names its results file when the row has
        several unverified runs."""
        if len(self.unverified) == 1:
            return list(next(iter(self.unverified.values())).problems)
        return [f"{run}: {p}" for run, v in self.unverified.items() for p in v.problems]

    @property
    def status(self) -> str:
        return "verified" if self.verified else "unverified: " + "; ".join(self.problems)


@dataclasses.dataclass
class Board:
    rows: list[Row]
    columns: list[str]
    notes: list[str]


@dataclasses.dataclass(frozen=True)
class Run:
    """One results file, read: its row identity and fields, and its cells by column."""

    path: Path
    key: str
    fields: dict[str, str]
    date: float
    cells: dict[str, Cell]
    verdict: Verdict


def find_results(dirs: Iterable[str | Path]) -> list[Path]:
    """Every ``results_*.json`` under each folder (or each results file given as is), sorted;
    an error names a folder that does not exist or holds none."""
    found: list[Path] = []
    for d in dirs:
        p = Path(d).expanduser()
        if p.is_file():
            found.append(p)
            continue
        if not p.is_dir():
            raise LeaderboardError(f"{d}: no such folder (expected an lm-eval --output_path folder)")
        files = sorted(p.rglob("results_*.json"))
        if not files:
            raise LeaderboardError(f"{d}: no results_*.json in it or below (expected an lm-eval "
                                   "--output_path folder)")
        found.extend(files)
    return sorted(set(found))


def verify_folder(results_dir: Path, *, allow_limit: bool = False) -> Verdict:
    """:func:`lm_eval_temporal.verify.verify_run` on one folder of results and samples files.
    Imported on use, so that the table is still written (every run marked unverified, saying
    why) where verify is not available."""
    try:
        from lm_eval_temporal.verify import verify_run
    except ImportError:
        return Verdict(False, ("verify not available",))
    try:
        report = verify_run(results_dir, allow_limit=allow_limit)
    except Exception as exc:  # noqa: BLE001 - a run verify cannot read is not verified; the table still gets written
        return Verdict(False, (f"verify failed: {type(exc).__name__}: {exc}",))
    problems = tuple(str(p) for p in report.problems)
    return Verdict(True) if report.ok else Verdict(False, problems or ("verify reported a failure",))


def _number(value: Any) -> float | None:
    """A recorded metric value, or None for what is not one (NaN, "N/A", absent): never 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _task_columns(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Values of METRICS per column (a task, and its filter when not ``none``) of lm-eval's
    ``results``; tasks with none of them are left out."""
    out: dict[str, dict[str, float | None]] = {}
    names = {m for m, _ in METRICS}
    for task, entry in results.items():
        if not isinstance(entry, dict):
            continue
        filters = sorted({k.split(",", 1)[1] for k in entry if "," in k and k.split(",", 1)[0] in names})
        for flt in filters:
            values = {m: _number(entry.get(f"{m},{flt}")) for m, _ in METRICS if m != "vote_gain"}
            em, final = values["exact_match"], values["final_pass"]
            values["vote_gain"] = em - final if em is not None and final is not None else None
            out[task if flt == "none" else f"{task} [{flt}]"] = {m: values[m] for m, _ in METRICS}
    return out


def _acting(settings: dict[str, Any]) -> dict[str, Any]:
    """The recorded settings that act on answers (run_info's rule), or all recorded output
    settings when they no longer parse (a run of another version)."""
    from lm_eval_temporal.errors import OptionError
    from lm_eval_temporal.options import BackendOptions, parse_options
    from lm_eval_temporal.run_info import acting_settings

    known = {f.name for f in dataclasses.fields(BackendOptions)}
    try:
        if set(settings) <= known:
            return json.loads(json.dumps(acting_settings(parse_options(settings)), default=str))
    except OptionError:
        pass
    return dict(settings)


def _defaults() -> dict[str, Any]:
    from lm_eval_temporal.options import BackendOptions

    return json.loads(json.dumps(dataclasses.asdict(BackendOptions()), default=str))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ":".join(map(_fmt, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _schedule(entry: dict[str, Any]) -> str:
    """A resolved schedule in a few characters: ``L32 S32 B8`` (gen_length, steps, block_length),
    with T (temperature) and thr (parallel_threshold) when set; other families' fields as k=v."""
    if "gen_length" in entry:
        s = f"L{entry['gen_length']} S{entry['steps']} B{entry['block_length']}"
        if entry.get("temperature"):
            s += f" T{_fmt(entry['temperature'])}"
        if entry.get("parallel_threshold") is not None:
            s += f" thr{_fmt(entry['parallel_threshold'])}"
        return s
    return " ".join(f"{k}={_fmt(v)}" for k, v in entry.items() if k not in ("rounded", "tasks") and v is not None)


def _checkpoint(ck: dict[str, Any], settings: dict[str, Any]) -> str:
    name = str(settings.get("pretrained") or ck.get("pretrained") or "?")
    parts = [name]
    if ck.get("revision") or settings.get("revision"):
        parts[0] += f"@{ck.get('revision') or settings.get('revision')}"
    if ck.get("commit"):
        parts.append(f"commit {str(ck['commit'])[:7]}")
    parts.append(f"sha256 {str(ck['weights_sha256'])[:12]}" if ck.get("weights_sha256") else "sha256 " + MISSING)
    if ck.get("peft") or settings.get("peft"):
        sha = ck.get("peft_sha256")
        parts.append(f"+ peft {ck.get('peft') or settings.get('peft')}" + (f" sha256 {str(sha)[:12]}" if sha else ""))
    return " · ".join(parts)


def _temporal_run(info: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, str]]:
    """(row key, row fields, schedule per task) of a llada_temporal run."""
    settings = info.get("settings") or {}
    ck = info.get("checkpoint") or {}
    acting = _acting(settings)
    content = {k: ck.get(k) for k in ("weights_sha256", "commit", "peft_sha256")}
    key = json.dumps({"checkpoint": content, "settings": acting}, sort_keys=True, default=str)
    vote = str(acting.get("vote", MISSING))  # acting: as recorded, with the defaults of what was not
    if vote in _ALPHA_VOTES and acting.get("alpha") is not None:
        vote += f" α={_fmt(acting['alpha'])}"
    schedules = {t: _schedule(s) for s in info.get("schedules") or [] for t in s.get("tasks", [])}
    defaults = _defaults()
    other = [f"{k}={_fmt(v)}" for k, v in sorted(acting.items())
             if k not in _SHOWN and k in defaults and v != defaults[k]]
    other += [f"{k}={_fmt(v)}" for k, v in sorted(acting.items()) if k not in defaults]
    fields = {"model": _checkpoint(ck, settings), "family": str(info.get("family") or settings.get("family") or MISSING),
              "protocol": str(settings.get("protocol") or (info.get("temporal") or {}).get("protocol") or MISSING),
              "vote": vote, "schedule": " | ".join(sorted(set(schedules.values()))) or MISSING,
              "settings": ", ".join(other) or "defaults"}
    return key, fields, schedules


def _other_run(cfg: dict[str, Any], model_name: str | None) -> tuple[str, dict[str, str], dict[str, str]]:
    """(row key, row fields, no schedules) of another backend's run: its protocol is not recorded."""
    args = cfg.get("model_args")
    args = args if isinstance(args, str) else ",".join(f"{k}={_fmt(v)}" for k, v in sorted((args or {}).items()))
    model = f"{cfg.get('model') or model_name or '?'}" + (f" ({args})" if args else "")
    key = json.dumps({"model": cfg.get("model"), "model_args": args}, sort_keys=True)
    return key, {"model": model, "family": MISSING, "protocol": MISSING, "vote": MISSING, "schedule": MISSING,
                 "settings": MISSING}, {}


def read_run(path: Path, verdict: Verdict) -> Run:
    """One results file as a :class:`Run`; an error names the file and what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeaderboardError(f"{path}: not a readable results JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise LeaderboardError(f"{path}: no 'results' object (not an lm-eval results file)")
    cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    info = cfg.get("llada_temporal")
    key, fields, schedules = (_temporal_run(info) if isinstance(info, dict)
                              else _other_run(cfg, data.get("model_name")))
    counts = data.get("n-samples") or {}
    cells = {}
    for column, values in _task_columns(data["results"]).items():
        task = column.split(" [", 1)[0]
        n = counts.get(task) or {}
        samples = f"{n.get('effective', MISSING)}/{n.get('original', MISSING)}" if n else MISSING
        cells[column] = Cell(values, str(path), schedules.get(task, MISSING), samples, verdict.verified)
    date = data.get("date")
    return Run(path, key, fields, float(date) if isinstance(date, (int, float)) else 0.0, cells, verdict)


def _notes(rows: list[Row], columns: list[str], repeated: list[str]) -> list[str]:
    """What a reader must know before comparing a column: more than one protocol in it,
    unverified rows in it, a task run twice for one row."""
    notes = []
    for col in columns:
        held = [r for r in rows if col in r.cells]
        protocols = sorted({r.fields["protocol"] for r in held})
        if len(protocols) > 1:
            notes.append(f"{col}: rows of {len(protocols)} protocols ({', '.join(protocols)}); compare scores "
                         "only between rows of one protocol (protocol column)")
        unverified = [r for r in held if not r.cells[col].verified]
        if unverified:
            notes.append(f"{col}: {len(unverified)} of {len(held)} rows come from unverified runs "
                         "(status column says why)")
    return notes + repeated


def _order(row: Row) -> tuple:
    """Verified rows first, then by protocol (scores compare within one), then best mean
    exact_match over the row's tasks (a row without any last)."""
    ems = [c.values["exact_match"] for c in row.cells.values() if c.values["exact_match"] is not None]
    return (not row.verified, row.fields["protocol"], -sum(ems) / len(ems) if ems else math.inf,
            row.fields["model"], row.key)


def build(dirs: Sequence[str | Path], *, allow_limit: bool = False) -> Board:
    """The table of every run under ``dirs``; each results folder is checked once with
    :func:`verify_folder` (``allow_limit`` passes on ``--allow-limit``)."""
    verdicts: dict[Path, Verdict] = {}
    rows: dict[str, Row] = {}
    dates: dict[tuple[str, str], float] = {}
    repeated = []
    for path in find_results(dirs):
        folder = path.parent
        if folder not in verdicts:
            verdicts[folder] = verify_folder(folder, allow_limit=allow_limit)
        run = read_run(path, verdicts[folder])
        row = rows.setdefault(run.key, Row(run.key, run.fields))
        if not run.verdict.verified:
            row.unverified[f"{path.parent.name}/{path.name}"] = run.verdict
        for col, cell in run.cells.items():
            if col in row.cells:
                repeated.append(f"{row.fields['model']}, {col}: more than one run; the latest is shown")
                if run.date < dates[(run.key, col)]:
                    continue
            row.cells[col], dates[(run.key, col)] = cell, run.date
    columns = sorted({c for r in rows.values() for c in r.cells})
    ordered = sorted(rows.values(), key=_order)
    return Board(ordered, columns, _notes(ordered, columns, repeated))


def display(metric: str, value: float | None) -> str:
    """How a value is shown: scores in %, vote gain in signed points, TSE and tpf as numbers;
    ``—`` when missing."""
    if value is None:
        return MISSING
    if metric == "vote_gain":
        return f"{100 * value:+.1f}"
    if metric in ("tse",):
        return f"{value:.3f}"
    if metric == "tpf":
        return f"{value:.2f}"
    return f"{100 * value:.1f}"


LEGEND = ("EM = exact_match, the scored answer (the vote when voting is on); final / ever = final-pass / "
          "ever-pass; gain = EM − final in points; scores in %; TSE = temporal semantic entropy (lower: steadier "
          "answers); tpf = tokens per forward pass; schedule L/S/B = gen_length / steps / block_length; "
          "settings = other settings that act, where not at their defaults; "
          f"{MISSING} = not recorded.")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(board: Board) -> str:
    """The table as GitHub Markdown: notes, legend, one header row (``task: metric``)."""
    head = list(FIELDS) + [f"{c}: {short}" for c in board.columns for _, short in METRICS]
    lines = ["# Leaderboard", ""]
    lines += [f"> **Note:** {_md_cell(n)}" for n in board.notes] + ([""] if board.notes else [])
    lines += [LEGEND, "", "| " + " | ".join(map(_md_cell, head)) + " |", "|" + "---|" * len(head)]
    for r in board.rows:
        status = "verified" if r.verified else "⚠ **unverified**: " + "; ".join(r.problems)
        cells = [r.fields[f] for f in FIELDS[:-1]] + [status]
        for c in board.columns:
            cell = r.cells.get(c)
            cells += [display(m, cell.values[m] if cell else None) for m, _ in METRICS]
        lines.append("| " + " | ".join(map(_md_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


def to_csv(board: Board) -> str:
    """The table as CSV: FIELDS, then ``task:metric`` as fractions (lm-eval's scale) and
    ``task:samples`` / ``task:run``; a missing value is an empty cell (never 0)."""
    head = list(FIELDS) + [f"{c}:{m}" for c in board.columns for m in [m for m, _ in METRICS] + ["samples", "run"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in board.rows:
        out = [r.fields[f] for f in FIELDS[:-1]] + [r.status]
        for c in board.columns:
            cell = r.cells.get(c)
            vals = [cell.values[m] if cell else None for m, _ in METRICS]
            out += ["" if v is None else repr(v) for v in vals]
            out += [cell.samples, cell.run] if cell else ["", ""]
        w.writerow(out)
    return buf.getvalue()


def write(board: Board, out: str | Path) -> list[Path]:
    """Write ``leaderboard.md``, ``.csv`` and ``.html`` into the folder ``out`` (created)."""
    from lm_eval_temporal.leaderboard_html import to_html

    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in FILES]
    for path, text in zip(paths, (to_markdown(board), to_csv(board), to_html(board))):
        path.write_text(text, encoding="utf-8")
    return paths


def leaderboard(dirs: Sequence[str | Path], out: str | Path, *, allow_limit: bool = False) -> list[Path]:
    """``lm-eval-temporal leaderboard DIR... -o OUT``: the files written."""
    return write(build(dirs, allow_limit=allow_limit), out)
