"""Figures and a self-contained HTML report from the backend's ``trajectory_path`` output.

``lm-eval-temporal plot TRAJECTORIES.jsonl -o DIR`` writes into DIR:

- ``timelines.png``: answer over denoising steps for a few samples (one row per distinct
  answer; green rows are correct, a star marks the vote);
- ``accuracy_by_step.png``: for each step, the share of samples whose answer at that step is
  correct, with final-pass, ever-pass and vote accuracy as reference lines;
- ``tse.png``: Temporal Semantic Entropy of samples whose final answer is correct vs incorrect;
- ``report.html``: one page embedding the three PNGs, with a summary table.

matplotlib is an optional extra (``pip install "lm-eval-temporal[plot]"``); it is imported only
when plotting, and through the Agg canvas directly, so a caller's pyplot backend is untouched.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike

TIMELINES = "timelines.png"
ACCURACY = "accuracy_by_step.png"
TSE = "tse.png"
REPORT = "report.html"

_MAX_ROWS = 8  # answer rows per timeline; beyond that the labels become unreadable
_LABEL_CHARS = 22
_GREEN, _RED, _BLUE, _GREY, _LIGHT = "#2ca02c", "#d62728", "#1f77b4", "#8c8c8c", "#d9d9d9"


class TrajectoryError(ValueError):
    """The trajectory file cannot be plotted (empty, malformed line, missing fields)."""


def _answer_correct(answer: str | None, gold: Any, answer_task: str) -> bool:
    # Imported at call time: tasks pulls in answers/math-verify, which reading the file does
    # not need, and tests replace this one function instead of the whole answers module.
    from lm_eval_temporal.tasks import answer_correct

    return answer_correct(answer, gold, answer_task)


@dataclass
class _Sample:
    source: str
    line: int
    task: str
    answer_task: str
    doc_id: Any
    gold: Any
    answers: list[str | None]
    final: str | None
    vote: str | None
    vote_step: int
    method: str
    tse: float
    # Correctness per distinct answer (answers repeat over hundreds of steps, and math-verify
    # is slow); empty when there is no gold.
    correct: dict[str, bool] = field(default_factory=dict)

    @property
    def has_gold(self) -> bool:
        return self.gold is not None

    @property
    def steps(self) -> int:
        return len(self.answers)

    @property
    def has_vote(self) -> bool:
        return self.method != "none"

    def ok(self, answer: str | None) -> bool:
        return answer is not None and self.correct.get(answer, False)

    @property
    def final_ok(self) -> bool:
        return self.ok(self.final)

    @property
    def vote_ok(self) -> bool:
        return self.ok(self.vote)

    @property
    def ever_ok(self) -> bool:
        return any(self.correct.values())


# ---------------------------------------------------------------------------------- reading
def _resolve(file: PathLike | Sequence[PathLike]) -> list[Path]:
    """One path, several, or a glob; a multi-GPU run's ``name.rankN.jsonl`` files are found
    from the ``trajectory_path`` the user passed (``name.jsonl``)."""
    items = [file] if isinstance(file, (str, os.PathLike)) else list(file)
    if not items:
        raise FileNotFoundError("no trajectory file given")
    paths: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a folder; pass the JSON Lines file written by trajectory_path")
        if p.is_file():
            paths.append(p)
            continue
        if glob.has_magic(str(item)):
            found = sorted(Path(m) for m in glob.glob(os.path.expanduser(str(item))) if Path(m).is_file())
        else:
            found = sorted(p.parent.glob(f"{glob.escape(p.stem)}.rank*{glob.escape(p.suffix)}"), key=_rank_key)
        if not found:
            raise FileNotFoundError(f"trajectory file not found: {item}")
        paths.extend(found)
    return list(dict.fromkeys(paths))


def _rank_key(p: Path) -> tuple[int, str]:
    m = re.search(r"\.rank(\d+)\.[^.]*$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _per_step_answers(value: Any) -> list[str | None] | None:
    if not isinstance(value, list) or not value:
        return None
    if all(a is None or isinstance(a, str) for a in value):
        return value
    # The run-length form of the samples log ([[answer, count], ...]) carries the same data.
    if all(isinstance(r, list) and len(r) == 2 and isinstance(r[1], int) for r in value):
        return [None if a is None else str(a) for a, n in value for _ in range(n)] or None
    return None


def _parse(path: Path, line: int, rec: Any) -> _Sample:
    where = f"{path}:{line}"
    if not isinstance(rec, dict):
        raise TrajectoryError(f"{where}: expected a JSON object per line, got {type(rec).__name__}")
    answers = _per_step_answers(rec.get("answers"))
    if answers is None:
        raise TrajectoryError(
            f"{where}: record has no per-step 'answers' list; plot reads the file written by "
            "--model_args trajectory_path=FILE (one record per request)"
        )
    task = str(rec.get("task") or "unknown")
    T = len(answers)
    vote_step = rec.get("vote_step")
    tse = rec.get("tse")
    return _Sample(
        source=str(path),
        line=line,
        task=task,
        # Older files held the answer parser under "task" (the summary overwrote it).
        answer_task=str(rec.get("answer_task") or task),
        doc_id=rec.get("doc_id"),
        gold=rec.get("gold"),
        answers=answers,
        final=rec["final"] if "final" in rec else answers[-1],
        vote=rec.get("vote"),
        vote_step=int(vote_step) if isinstance(vote_step, int) and 0 <= vote_step < T else T - 1,
        method=str(rec.get("method") or ("none" if rec.get("vote") is None else "unknown")),
        tse=float(tse) if isinstance(tse, (int, float)) else math.nan,
    )


def load_trajectories(file: PathLike | Sequence[PathLike]) -> list[_Sample]:
    """Read and validate trajectory records (no correctness yet)."""
    paths = _resolve(file)
    samples: list[_Sample] = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            for i, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError as exc:
                    hint = " (an interrupted run can leave a partial last line; delete it)" if not raw.endswith("\n") else ""
                    raise TrajectoryError(f"{path}:{i}: not valid JSON: {exc}{hint}") from None
                samples.append(_parse(path, i, rec))
    if not samples:
        raise TrajectoryError(f"no trajectory records in {', '.join(map(str, paths))} (empty file)")
    return samples


def _score(samples: list[_Sample]) -> None:
    for s in samples:
        if s.has_gold:
            distinct = {a for a in s.answers if a is not None} | {a for a in (s.final, s.vote) if a is not None}
            s.correct = {a: bool(_answer_correct(a, s.gold, s.answer_task)) for a in distinct}


# ---------------------------------------------------------------------------------- numbers
def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def summarize(samples: list[_Sample]) -> dict[str, Any]:
    """Accuracies over samples with a gold answer; TSE over all samples."""
    gold = [s for s in samples if s.has_gold]
    voted = [s for s in gold if s.has_vote]
    return {
        "n": len(samples),
        "n_gold": len(gold),
        "final_pass": _mean([float(s.final_ok) for s in gold]),
        "ever_pass": _mean([float(s.ever_ok) for s in gold]),
        "vote_acc": _mean([float(s.vote_ok) for s in voted]),
        "mean_tse": _mean([s.tse for s in samples]),
        "steps": sorted({s.steps for s in samples}),
        "methods": sorted({s.method for s in samples}),
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _by_task(samples: list[_Sample]) -> dict[str, list[_Sample]]:
    out: dict[str, list[_Sample]] = {}
    for s in samples:
        out.setdefault(s.task, []).append(s)
    return out


# ---------------------------------------------------------------------------------- choosing
_KINDS = ("vote fixes", "vote hurts", "lost", "wrong", "right", "no gold")


def _kind(s: _Sample) -> str:
    if not s.has_gold:
        return "no gold"
    if s.has_vote and s.vote_ok and not s.final_ok:
        return "vote fixes"
    if s.has_vote and s.final_ok and not s.vote_ok:
        return "vote hurts"
    if s.final_ok:
        return "right"
    return "lost" if s.ever_ok else "wrong"


def choose_samples(samples: list[_Sample], k: int) -> list[_Sample]:
    """Round-robin over outcome kinds so the grid shows where voting helps, hurts and where
    the right answer was reached and lost, not just the first k records (records without
    gold come last); within a kind, samples whose answer changes come first, then file order."""
    buckets: dict[str, list[_Sample]] = {kind: [] for kind in _KINDS}
    for s in samples:
        buckets[_kind(s)].append(s)
    for b in buckets.values():
        b.sort(key=lambda s: len({a for a in s.answers if a is not None}) <= 1)  # stable
    chosen: list[_Sample] = []
    while len(chosen) < k and any(buckets.values()):
        # Records without gold say nothing about correctness: shown only once the rest ran out.
        kinds = [kind for kind in _KINDS[:-1] if buckets[kind]] or ["no gold"]
        for kind in kinds:
            if len(chosen) < k:
                chosen.append(buckets[kind].pop(0))
    return chosen


# ---------------------------------------------------------------------------------- drawing
def _label(text: Any, limit: int = _LABEL_CHARS) -> str:
    s = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, separators=(",", ":"))
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    # "$" would start matplotlib mathtext, and LaTeX answers (math500) are not valid mathtext.
    return s.replace("$", r"\$")


def _runs(values: list[Any]) -> list[tuple[Any, int, int]]:
    """[(value, start, length), ...] over consecutive equal values."""
    out: list[tuple[Any, int, int]] = []
    for i, v in enumerate(values):
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1], out[-1][2] + 1)
        else:
            out.append((v, i, 1))
    return out


def _timeline(ax: Any, s: _Sample) -> None:
    from matplotlib.ticker import MaxNLocator

    held = Counter(a for a in s.answers if a is not None)
    order = list(dict.fromkeys(a for a in s.answers if a is not None))  # first appearance
    if len(order) > _MAX_ROWS:
        keep = {a for a in (s.final, s.vote) if a is not None} | {a for a in order if s.ok(a)}
        keep |= {a for a, _ in held.most_common()[: max(0, _MAX_ROWS - 1 - len(keep))]}
        rows = [a for a in order if a in keep]
        other = len(order) - len(rows)
    else:
        rows, other = order, 0
    row_of: dict[Any, int] = {a: i for i, a in enumerate(reversed(rows), start=2 if other else 1)}
    labels = {0: "(no answer)"}
    if other:
        labels[1] = f"other ({other})"
    for a, y in row_of.items():
        labels[y] = _label(a)

    def y_of(a: str | None) -> int:
        return 0 if a is None else row_of.get(a, 1)

    def colour(a: str | None) -> str:
        if a is None:
            return _LIGHT
        if a not in row_of:
            return _GREY
        if not s.has_gold:
            return _BLUE
        return _GREEN if s.ok(a) else _RED

    for a, start, n in _runs(s.answers):
        ax.broken_barh([(start - 0.5, n)], (y_of(a) - 0.3, 0.6), facecolors=colour(a), linewidth=0)
    if s.has_vote and s.vote is not None:
        ax.axvline(s.vote_step, color="black", linestyle=":", linewidth=1)
        ax.plot([s.vote_step], [y_of(s.vote)], marker="*", color="gold", markeredgecolor="black", markersize=12, zorder=5, clip_on=False)
    ys = sorted(labels)
    ax.set_yticks(ys, [labels[y] for y in ys], fontsize=7)
    for tick, y in zip(ax.get_yticklabels(), ys):
        a = next((a for a, r in row_of.items() if r == y), None)
        if a is not None and s.ok(a):
            tick.set_color(_GREEN)
            tick.set_fontweight("bold")
    ax.set_ylim(-0.6, max(ys) + 0.6)
    ax.set_xlim(-0.5, s.steps - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.tick_params(axis="x", labelsize=7)
    gold = f"gold {_label(s.gold, 16)}" if s.has_gold else "no gold"
    tse = "" if math.isnan(s.tse) else f" · TSE {s.tse:.2f}"
    ax.set_title(f"{_label(s.task, 18)} #{s.doc_id} · {gold}{tse}\n{_kind(s)}", fontsize=8)


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)
    return path


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def _draw_timelines(chosen: list[_Sample], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows, cols = _grid(len(chosen), 3)
    fig = Figure(figsize=(5.0 * cols, 2.7 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, s in zip(axes.flat, chosen):
        _timeline(ax, s)
    for ax in list(axes.flat)[len(chosen):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("denoising step", fontsize=8)
    handles = [
        Patch(color=_GREEN, label="correct answer"),
        Patch(color=_RED, label="incorrect answer"),
        Patch(color=_LIGHT, label="no answer yet"),
    ]
    handles.append(Line2D([], [], marker="*", color="gold", markeredgecolor="black", linestyle=":", label="vote (step and answer)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    fig.suptitle("Answer over denoising steps", fontsize=11)
    return _save(fig, path)


def _accuracy_curves(group: list[_Sample]) -> tuple[list[float], list[float], list[float], str]:
    """(x, accuracy at step, correct at some step so far, x label). Runs with different step
    counts are compared at the same fraction of denoising, not the same step index."""
    steps = {s.steps for s in group}
    G = max(steps)
    if len(steps) == 1:
        x, label = [float(i) for i in range(G)], "denoising step"
        index = lambda s, j: j  # noqa: E731
    else:
        x, label = [j / max(1, G - 1) for j in range(G)], "fraction of denoising steps"
        index = lambda s, j: round(j * (s.steps - 1) / max(1, G - 1))  # noqa: E731
    at = [0.0] * G
    ever = [0.0] * G
    for s in group:
        seen = False
        for j in range(G):
            ok = s.ok(s.answers[index(s, j)])
            seen = seen or ok
            at[j] += ok
            ever[j] += seen
    n = len(group)
    return x, [v / n for v in at], [v / n for v in ever], label


def _draw_accuracy(groups: dict[str, list[_Sample]], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows, cols = _grid(len(groups), 3)
    fig = Figure(figsize=(5.6 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (task, group) in zip(axes.flat, groups.items()):
        x, at, ever, xlabel = _accuracy_curves(group)
        st = summarize(group)
        ax.plot(x, at, color=_BLUE, linewidth=1.6, label="answer at step correct")
        ax.plot(x, ever, color=_GREY, linewidth=1.2, linestyle="-.", label="correct at some step so far")
        for key, name, style, col in (
            ("final_pass", "final-pass", "--", "black"),
            ("ever_pass", "ever-pass", ":", _GREEN),
            ("vote_acc", "vote", "--", "darkorange"),
        ):
            if st[key] is not None:
                ax.axhline(st[key], color=col, linestyle=style, linewidth=1.1, label=f"{name} {_pct(st[key])}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(x[0], x[-1] if len(x) > 1 else x[0] + 1)
        if xlabel == "denoising step":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
        ax.grid(alpha=0.3)
        ax.set_title(f"{_label(task, 40)} (n={len(group)})", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle("Accuracy by denoising step", fontsize=11)
    return _save(fig, path)


def _draw_tse(groups: dict[str, list[_Sample]], path: Path) -> Path:
    import numpy as np
    from matplotlib.figure import Figure

    rows, cols = _grid(len(groups), 3)
    fig = Figure(figsize=(5.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (task, group) in zip(axes.flat, groups.items()):
        finite = [s for s in group if not math.isnan(s.tse)]
        values = [s.tse for s in finite]
        ax.set_title(f"{_label(task, 40)} (n={len(finite)})", fontsize=9)
        ax.set_xlabel("temporal semantic entropy", fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
        if not values:
            ax.text(0.5, 0.5, "no TSE values", ha="center", va="center", transform=ax.transAxes)
            continue
        lo, hi = min(values), max(values)
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, min(30, max(6, round(math.sqrt(len(values))) + 1)))
        if any(s.has_gold for s in finite):
            for name, col, keep in (("final correct", _GREEN, True), ("final incorrect", _RED, False)):
                v = [s.tse for s in finite if s.has_gold and s.final_ok == keep]
                if v:
                    ax.hist(v, bins=bins, histtype="stepfilled", facecolor=col, edgecolor=col, alpha=0.5, label=f"{name}: n={len(v)}, mean {sum(v) / len(v):.2f}")
        else:
            ax.hist(values, bins=bins, color=_BLUE, alpha=0.7, label=f"all (no gold): n={len(values)}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle("TSE: final answer correct vs incorrect", fontsize=11)
    return _save(fig, path)


# ---------------------------------------------------------------------------------- report
def _table(groups: dict[str, list[_Sample]], samples: list[_Sample]) -> str:
    rows = [(task, summarize(g)) for task, g in groups.items()]
    if len(groups) > 1:
        rows.append(("all", summarize(samples)))
    head = "".join(f"<th>{h}</th>" for h in ("task", "n", "with gold", "final-pass", "ever-pass", "vote accuracy", "mean TSE", "steps", "vote method"))
    body = []
    for task, st in rows:
        cells = (
            task,
            str(st["n"]),
            str(st["n_gold"]),
            _pct(st["final_pass"]),
            _pct(st["ever_pass"]),
            _pct(st["vote_acc"]),
            _num(st["mean_tse"]),
            ", ".join(map(str, st["steps"])),
            ", ".join(st["methods"]),
        )
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}thead{background:#f3f3f3}
img{max-width:100%;border:1px solid #eee}figure{margin:2em 0}figcaption{color:#555;font-size:.9em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}code{background:#f3f3f3;padding:0 .2em}
"""


def _report(path: Path, sources: list[str], samples: list[_Sample], groups: dict[str, list[_Sample]], figures: list[tuple[Path, str, str]], notes: list[str]) -> Path:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Trajectory report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Temporal trajectory report</h1>",
        "<p>Source: " + ", ".join(f"<code>{html.escape(s)}</code>" for s in sources) + "</p>",
        "<h2>Summary</h2>",
        _table(groups, samples),
        "<p>final-pass: final answer correct; ever-pass: correct at some step; vote accuracy: the "
        "temporal vote's answer correct (records decoded with <code>vote=none</code> have no vote). "
        "Accuracies count only records with a gold answer; mean TSE counts all records.</p>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    for png, title, caption in figures:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f"<figure><h2>{html.escape(title)}</h2><img alt=\"{html.escape(title)}\" "
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def plot_trajectories(file: PathLike | Sequence[PathLike], output: PathLike, samples: int = 12) -> list[Path]:
    """Write the PNGs and ``report.html`` into ``output``; returns the written paths.

    ``file`` is the JSON Lines file written with ``--model_args trajectory_path=FILE`` (also:
    several files, a glob, or the unsuffixed name of a multi-GPU run's ``.rankN`` files).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError('plotting needs matplotlib: pip install "lm-eval-temporal[plot]"') from exc
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    sources = [str(p) for p in _resolve(file)]
    records = load_trajectories(sources)
    _score(records)
    out = Path(output).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    groups = _by_task(records)
    with_gold = {t: [s for s in g if s.has_gold] for t, g in groups.items()}
    with_gold = {t: g for t, g in with_gold.items() if g}
    notes: list[str] = []
    missing = sum(not s.has_gold for s in records)
    if missing == len(records):
        notes.append("No record has a gold answer, so there are no accuracy numbers or accuracy plot; "
                     "gold is recorded only for this package's tasks (gsm8k_temporal, svamp, math500, countdown, arith_chain).")
    elif missing:
        notes.append(f"{missing} of {len(records)} records have no gold answer; they are left out of the "
                     "accuracy numbers, the accuracy plot and the correct/incorrect TSE split.")
    dupes = sum(n - 1 for n in Counter((s.task, json.dumps(s.doc_id)) for s in records).values() if n > 1)
    if dupes:
        notes.append(f"{dupes} records repeat a (task, doc_id) pair: trajectory_path appends, so the file "
                     "may hold several runs; all records are counted.")

    figures: list[tuple[Path, str, str]] = []
    chosen = choose_samples(records, samples)
    if chosen:
        figures.append((
            _draw_timelines(chosen, out / TIMELINES),
            "Answer over denoising steps",
            f"{len(chosen)} of {len(records)} samples, picked across outcomes (vote fixes, vote hurts, "
            "correct then lost, never correct, correct). One row per distinct answer (the most held "
            "ones when there are many); green rows are correct, the star marks the vote's step and answer.",
        ))
    if with_gold:
        figures.append((
            _draw_accuracy(with_gold, out / ACCURACY),
            "Accuracy by denoising step",
            "Share of samples whose answer at each step is correct, the share correct at some step so far, "
            "and final-pass / ever-pass / vote accuracy as reference lines.",
        ))
    figures.append((
        _draw_tse(with_gold or groups, out / TSE),
        "Temporal Semantic Entropy",
        "TSE per sample, split by whether the final answer is correct (lower TSE: a more stable trajectory)."
        if with_gold else "TSE per sample (no gold answers, so no correct/incorrect split).",
    ))
    report = _report(out / REPORT, sources, records, groups, figures, notes)
    return [p for p, _, _ in figures] + [report]
