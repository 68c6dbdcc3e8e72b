"""Figures and a self-contained HTML report from the backend's ``trajectory_path`` output.

``lm-eval-temporal plot TRAJECTORIES.jsonl -o DIR`` writes into DIR:

- ``timelines.png``: answer over denoising steps for a few samples (one row per distinct
  answer; green rows are correct, a star marks the vote);
- ``accuracy_by_step.png``: for each step, the share of samples whose answer at that step is
  correct, with final-pass, ever-pass and vote accuracy as reference lines;
- ``tse.png``: Temporal Semantic Entropy of samples whose final answer is correct vs incorrect;
- ``report.html``: one page embedding the three PNGs, with a summary table.

Records are read as :class:`~lm_eval_temporal.record.TemporalRecord` and scored with
:func:`lm_eval_temporal.metrics.score`. matplotlib is an optional extra
(``pip install "lm-eval-temporal[plot]"``), imported only when plotting.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path

from lm_eval_temporal.plot.samples import (
    PathLike,
    Sample,
    TrajectoryError,
    by_task,
    choose_samples,
    load_trajectories,
    num,
    pct,
    resolve,
    score_all,
    summarize,
)

__all__ = ["plot_trajectories", "load_trajectories", "summarize", "choose_samples", "Sample", "TrajectoryError",
           "TIMELINES", "ACCURACY", "TSE", "REPORT"]

log = logging.getLogger(__name__)

TIMELINES = "timelines.png"
ACCURACY = "accuracy_by_step.png"
TSE = "tse.png"
REPORT = "report.html"


def _table(groups: dict[str, list[Sample]], samples: list[Sample]) -> str:
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
            pct(st["final_pass"]),
            pct(st["ever_pass"]),
            pct(st["vote_acc"]),
            num(st["mean_tse"]),
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


def _report(path: Path, sources: list[str], samples: list[Sample], groups: dict[str, list[Sample]], figures: list[tuple[Path, str, str]], notes: list[str]) -> Path:
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
    from lm_eval_temporal.plot import figures as draw
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    sources = [str(p) for p in resolve(file)]
    loaded = load_trajectories(sources)
    # One record per (task, document): a file appended to by several runs keeps the last one.
    records = list({s.record.key: s for s in loaded}.values())
    dupes = len(loaded) - len(records)
    if dupes:
        log.warning("%d records repeat a (task, doc_id) pair; the last of each is plotted", dupes)
    score_all(records)
    out = Path(output).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    groups = by_task(records)
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
    if dupes:
        notes.append(f"{dupes} records repeated a (task, doc_id) pair (a file appended to by several runs); "
                     "only the last record of each pair is counted.")

    figures: list[tuple[Path, str, str]] = []
    chosen = choose_samples(records, samples)
    if chosen:
        figures.append((
            draw.draw_timelines(chosen, out / TIMELINES),
            "Answer over denoising steps",
            f"{len(chosen)} of {len(records)} samples, picked across outcomes (vote fixes, vote hurts, "
            "correct then lost, never correct, correct). One row per distinct answer (the most held "
            "ones when there are many); green rows are correct, the star marks the vote's step and answer.",
        ))
    if with_gold:
        figures.append((
            draw.draw_accuracy(with_gold, out / ACCURACY),
            "Accuracy by denoising step",
            "Share of samples whose answer at each step is correct, the share correct at some step so far, "
            "and final-pass / ever-pass / vote accuracy as reference lines.",
        ))
    figures.append((
        draw.draw_tse(with_gold or groups, out / TSE),
        "Temporal Semantic Entropy",
        "TSE per sample, split by whether the final answer is correct (lower TSE: a more stable trajectory)."
        if with_gold else "TSE per sample (no gold answers, so no correct/incorrect split).",
    ))
    report = _report(out / REPORT, sources, records, groups, figures, notes)
    return [p for p, _, _ in figures] + [report]

