"""The three figures (matplotlib through the Agg canvas, so a caller's pyplot backend is untouched)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from lm_eval_temporal.plot.samples import Sample, outcome, pct, summarize
from lm_eval_temporal.record import run_length

_MAX_ROWS = 8  # answer rows per timeline; beyond that the labels become unreadable
_LABEL_CHARS = 22
_GREEN, _RED, _BLUE, _GREY, _LIGHT = "#2ca02c", "#d62728", "#1f77b4", "#8c8c8c", "#d9d9d9"


def _label(text: Any, limit: int = _LABEL_CHARS) -> str:
    s = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, separators=(",", ":"))
    s = " ".join(s.split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    # "$" would start matplotlib mathtext, and LaTeX answers (math500) are not valid mathtext.
    return s.replace("$", r"\$")


def _runs(values: list[Any]) -> list[tuple[Any, int, int]]:
    """[(value, start, length), ...] over consecutive equal values."""
    out, start = [], 0
    for value, n in run_length(values):
        out.append((value, start, n))
        start += n
    return out


def _timeline(ax: Any, s: Sample) -> None:
    from matplotlib.ticker import MaxNLocator

    held = Counter(a for a in s.record.answers if a is not None)
    order = list(dict.fromkeys(a for a in s.record.answers if a is not None))  # first appearance
    if len(order) > _MAX_ROWS:
        keep = {a for a in (s.record.final, s.record.vote) if a is not None} | {a for a in order if s.ok(a)}
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

    for a, start, n in _runs(s.record.answers):
        ax.broken_barh([(start - 0.5, n)], (y_of(a) - 0.3, 0.6), facecolors=colour(a), linewidth=0)
    if s.record.has_vote and s.record.vote is not None:
        ax.axvline(s.record.vote_step, color="black", linestyle=":", linewidth=1)
        ax.plot([s.record.vote_step], [y_of(s.record.vote)], marker="*", color="gold", markeredgecolor="black", markersize=12, zorder=5, clip_on=False)
    ys = sorted(labels)
    ax.set_yticks(ys, [labels[y] for y in ys], fontsize=7)
    for tick, y in zip(ax.get_yticklabels(), ys):
        a = next((a for a, r in row_of.items() if r == y), None)
        if a is not None and s.ok(a):
            tick.set_color(_GREEN)
            tick.set_fontweight("bold")
    ax.set_ylim(-0.6, max(ys) + 0.6)
    ax.set_xlim(-0.5, s.record.steps_run - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.tick_params(axis="x", labelsize=7)
    gold = f"gold {_label(s.record.gold, 16)}" if s.has_gold else "no gold"
    tse = "" if math.isnan(s.record.tse) else f" · TSE {s.record.tse:.2f}"
    ax.set_title(f"{_label(s.task, 18)} #{s.record.doc_id} · {gold}{tse}\n{outcome(s)}", fontsize=8)


def _save(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)
    return path


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def draw_timelines(chosen: list[Sample], path: Path) -> Path:
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


def accuracy_curves(group: list[Sample]) -> tuple[list[float], list[float], list[float], str]:
    """(x, accuracy at step, correct at some step so far, x label). Runs with different step
    counts are compared at the same fraction of denoising, not the same step index."""
    steps = {s.record.steps_run for s in group}
    G = max(steps)
    if len(steps) == 1:
        x, label = [float(i) for i in range(G)], "denoising step"
        index = lambda s, j: j  # noqa: E731
    else:
        x, label = [j / max(1, G - 1) for j in range(G)], "fraction of denoising steps"
        index = lambda s, j: round(j * (s.record.steps_run - 1) / max(1, G - 1))  # noqa: E731
    at = [0.0] * G
    ever = [0.0] * G
    for s in group:
        seen = False
        for j in range(G):
            ok = s.ok(s.record.answers[index(s, j)])
            seen = seen or ok
            at[j] += ok
            ever[j] += seen
    n = len(group)
    return x, [v / n for v in at], [v / n for v in ever], label


def draw_accuracy(groups: dict[str, list[Sample]], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows, cols = _grid(len(groups), 3)
    fig = Figure(figsize=(5.6 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (task, group) in zip(axes.flat, groups.items()):
        x, at, ever, xlabel = accuracy_curves(group)
        st = summarize(group)
        ax.plot(x, at, color=_BLUE, linewidth=1.6, label="answer at step correct")
        ax.plot(x, ever, color=_GREY, linewidth=1.2, linestyle="-.", label="correct at some step so far")
        for key, name, style, col in (
            ("final_pass", "final-pass", "--", "black"),
            ("ever_pass", "ever-pass", ":", _GREEN),
            ("vote_acc", "vote", "--", "darkorange"),
        ):
            if st[key] is not None:
                ax.axhline(st[key], color=col, linestyle=style, linewidth=1.1, label=f"{name} {pct(st[key])}")
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


def draw_tse(groups: dict[str, list[Sample]], path: Path) -> Path:
    import numpy as np
    from matplotlib.figure import Figure

    rows, cols = _grid(len(groups), 3)
    fig = Figure(figsize=(5.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (task, group) in zip(axes.flat, groups.items()):
        finite = [s for s in group if not math.isnan(s.record.tse)]
        values = [s.record.tse for s in finite]
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
                v = [s.record.tse for s in finite if s.has_gold and s.final_ok == keep]
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


