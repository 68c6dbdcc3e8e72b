"""Reading trajectory files into scored samples, the summary numbers, and which samples to draw."""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval_temporal import metrics
from lm_eval_temporal.metrics import Score
from lm_eval_temporal.record import RecordError, TemporalRecord

PathLike = str | os.PathLike


class TrajectoryError(ValueError):
    """The trajectory file cannot be plotted (empty, malformed line, missing fields)."""


@dataclass
class Sample:
    """One trajectory record, where it was read, and its score (None without a gold answer)."""

    record: TemporalRecord
    source: str
    line: int
    score: Score | None = None

    @property
    def task(self) -> str:
        return str(self.record.task or "unknown")

    @property
    def has_gold(self) -> bool:
        return self.record.gold is not None

    def ok(self, answer: str | None) -> bool:
        return answer is not None and self.score is not None and self.score.correct.get(answer, False)

    @property
    def final_ok(self) -> bool:
        return self.score is not None and self.score.final_pass

    @property
    def vote_ok(self) -> bool:
        return self.score is not None and self.score.vote_pass

    @property
    def ever_ok(self) -> bool:
        return self.score is not None and self.score.ever_pass


# ---------------------------------------------------------------------------------- reading
def resolve(file: PathLike | Sequence[PathLike]) -> list[Path]:
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


def load_trajectories(file: PathLike | Sequence[PathLike]) -> list[Sample]:
    """Read and validate trajectory records (no correctness yet)."""
    paths = resolve(file)
    samples: list[Sample] = []
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
                try:
                    record = TemporalRecord.from_json(rec, f"{path}:{i}")
                except RecordError as exc:
                    raise TrajectoryError(f"{exc}; plot reads the file written by --model_args trajectory_path=FILE "
                                          "(one record per request)") from None
                samples.append(Sample(record, str(path), i))
    if not samples:
        raise TrajectoryError(f"no trajectory records in {', '.join(map(str, paths))} (empty file)")
    return samples


def score_all(samples: list[Sample]) -> None:
    for s in samples:
        if s.has_gold:
            s.score = metrics.score(s.record, s.record.gold)


# ---------------------------------------------------------------------------------- numbers
def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Accuracies over samples with a gold answer; TSE over all samples."""
    gold = [s for s in samples if s.has_gold]
    voted = [s for s in gold if s.record.has_vote]
    return {
        "n": len(samples),
        "n_gold": len(gold),
        "final_pass": _mean([float(s.final_ok) for s in gold]),
        "ever_pass": _mean([float(s.ever_ok) for s in gold]),
        "vote_acc": _mean([float(s.vote_ok) for s in voted]),
        "mean_tse": _mean([s.record.tse for s in samples]),
        "steps": sorted({s.record.steps_run for s in samples}),
        "methods": sorted({s.record.method for s in samples}),
    }


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def by_task(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.task, []).append(s)
    return out


# ---------------------------------------------------------------------------------- choosing
_KINDS = ("vote fixes", "vote hurts", "lost", "wrong", "right", "no gold")


def outcome(s: Sample) -> str:
    if not s.has_gold:
        return "no gold"
    if s.record.has_vote and s.vote_ok and not s.final_ok:
        return "vote fixes"
    if s.record.has_vote and s.final_ok and not s.vote_ok:
        return "vote hurts"
    if s.final_ok:
        return "right"
    return "lost" if s.ever_ok else "wrong"


def choose_samples(samples: list[Sample], k: int) -> list[Sample]:
    """Round-robin over outcome kinds so the grid shows where voting helps, hurts and where
    the right answer was reached and lost, not just the first k records (records without
    gold come last); within a kind, samples whose answer changes come first, then file order."""
    buckets: dict[str, list[Sample]] = {kind: [] for kind in _KINDS}
    for s in samples:
        buckets[outcome(s)].append(s)
    for b in buckets.values():
        b.sort(key=lambda s: len({a for a in s.record.answers if a is not None}) <= 1)  # stable
    chosen: list[Sample] = []
    while len(chosen) < k and any(buckets.values()):
        # Records without gold say nothing about correctness: shown only once the rest ran out.
        kinds = [kind for kind in _KINDS[:-1] if buckets[kind]] or ["no gold"]
        for kind in kinds:
            if len(chosen) < k:
                chosen.append(buckets[kind].pop(0))
    return chosen


