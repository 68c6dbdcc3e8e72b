"""``TemporalRecord``: the one schema of a sample's temporal result.

The pipeline builds one record per generated row; everything downstream reads it: the
backend's response and trace, the trajectory file, the metrics (:mod:`lm_eval_temporal.metrics`),
the plots, the benchmarks and the TCR statistics. It serialises two ways, with one encoding
of the per-step answers (run-length, ``[[answer, count], ...]``: hundreds of steps usually hold
a handful of answers):

- :meth:`TemporalRecord.to_trace`: the compact line that rides behind a response through
  lm-eval's cache, sample logs and rank gathering (:mod:`lm_eval_temporal.trace`);
- :meth:`TemporalRecord.to_json`: one line of a ``trajectory_path`` file (the trace fields plus
  where the sample came from, its gold answer, step weights and texts).

:meth:`TemporalRecord.from_json` reads either back. Torch-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SCHEMA_VERSION", "RecordError", "TemporalRecord", "run_length", "expand_runs"]

# 1: the first trace (run-length answers) and trajectory (plain list of answers) lines;
# 2: one record, run-length answers in both.
SCHEMA_VERSION = 2


class RecordError(ValueError):
    """A serialised record cannot be read (the message says which field and why)."""


def run_length(answers: list[str | None]) -> list[list[Any]]:
    """[a, a, b, None, None] -> [[a, 2], [b, 1], [None, 2]]."""
    out: list[list[Any]] = []
    for a in answers:
        if out and out[-1][0] == a:
            out[-1][1] += 1
        else:
            out.append([a, 1])
    return out


def expand_runs(value: Any, where: str = "record") -> list[str | None]:
    """Per-step answers from their run-length form (or from a plain list, as version 1
    trajectory lines stored them)."""
    if not isinstance(value, list):
        raise RecordError(f"{where}: 'answers' must be a list, got {type(value).__name__}")
    if all(a is None or isinstance(a, str) for a in value):
        return list(value)
    if all(isinstance(r, list) and len(r) == 2 and (r[0] is None or isinstance(r[0], str))
           and isinstance(r[1], int) and not isinstance(r[1], bool) and r[1] >= 1 for r in value):
        return [a for a, n in value for _ in range(n)]
    raise RecordError(f"{where}: 'answers' must be run-length pairs [[answer, count], ...] or a list of answers")


@dataclass
class TemporalRecord:
    """One sample's temporal result.

    ``answers[s]`` is the answer parsed at denoising step ``s`` (None: nothing parsed) for the
    steps the row ran (``steps_run`` of them). ``steps`` is the temporal horizon T its vote and
    TSE are taken over (docs/algorithm.md, "The horizon T"): the schedule's steps (more than
    ``steps_run`` when early stop ended the row), or, where the row chose its own number of
    steps (parallel decoding), ``steps_run``. ``schedule_steps`` is the exact schedule's step
    count for these settings (``SamplerConfig.steps``; default ``steps``), which
    ``steps_saved`` counts against. ``final`` is the last answer, ``vote`` the voted answer (None when
    ``method`` is ``none`` or nothing parsed) and ``vote_step`` the step whose text was returned.
    ``tse`` is the Temporal Semantic Entropy in bits. The rest is known where the record is made
    for a file: ``task`` / ``doc_id`` (lm-eval's), ``gold`` (the normalised gold answer),
    ``weights`` (each step's vote weight), ``final_text``, ``response`` (the text returned),
    ``step_texts`` (with ``trajectory_text=true``), and the gated vote's verdict.
    ``protocol`` says how the answers were read and are to be scored (``default`` or ``paper``).
    ``tokens`` (valid output tokens: generated before EOS, no prompt, no padding) and ``nfe``
    (the model's forward passes for the row; guidance counts two per step) give tokens per
    forward pass (``tpf``) when summed over a run; None in records made before they existed.
    """

    answer_task: str
    steps: int
    answers: list[str | None]
    final: str | None
    vote: str | None
    vote_step: int
    method: str
    tse: float
    task: str | None = None
    doc_id: Any = None
    gold: Any = None
    weights: list[float] | None = None
    final_text: str | None = None
    response: str | None = None
    step_texts: list[str] | None = None
    gate_kept_final: bool | None = None
    gate_share: float | None = None
    protocol: str = "default"
    schedule_steps: int | None = None  # None: ``steps``
    tokens: int | None = None
    nfe: int | None = None

    def __post_init__(self) -> None:
        if self.schedule_steps is None:
            self.schedule_steps = self.steps

    @property
    def steps_run(self) -> int:
        """Forward steps the row used (one answer per step run)."""
        return len(self.answers)

    @property
    def steps_saved(self) -> float:
        """The share of the exact schedule's forward passes the row did not use (early stop, or
        parallel decoding): ``1 - steps_run / schedule_steps``. Negative where parallel decoding
        took more steps than the schedule (not clamped: that is a cost)."""
        return 1.0 - self.steps_run / self.schedule_steps

    @property
    def key(self) -> tuple[str, str]:
        """Which sample this is: (lm-eval task, document id); a run holds one record per key."""
        return str(self.task), json.dumps(self.doc_id)

    @property
    def has_vote(self) -> bool:
        return self.method != "none"

    def distinct_answers(self) -> set[str]:
        """Every answer the record holds (steps, final and vote), for judging each once."""
        return {a for a in (*self.answers, self.final, self.vote) if a is not None}

    def to_trace(self) -> dict[str, Any]:
        """The compact form carried behind a response (what the task metrics need)."""
        return {
            "v": SCHEMA_VERSION,
            "answer_task": self.answer_task,
            "steps": self.steps,
            "steps_run": self.steps_run,  # forward passes used (fewer than steps after an early stop)
            # Only where it is not ``steps`` (parallel decoding), to keep the trace short.
            **({"schedule_steps": self.schedule_steps} if self.schedule_steps != self.steps else {}),
            "answers": run_length(self.answers),
            "final": self.final,
            "vote": self.vote,
            "vote_step": self.vote_step,
            "method": self.method,
            "tse": self.tse,
            "protocol": self.protocol,
            **{k: v for k, v in (("tokens", self.tokens), ("nfe", self.nfe)) if v is not None},
        }

    def to_json(self) -> dict[str, Any]:
        """One trajectory-file line: the trace fields plus everything known about the sample.
        Optional fields that were never set are left out."""
        out = self.to_trace()
        for name in ("task", "doc_id", "gold", "weights", "final_text", "response", "step_texts",
                     "gate_kept_final", "gate_share"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> TemporalRecord:
        """Read a :meth:`to_trace` or :meth:`to_json` dict back (schema versions 1 and 2)."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        version = data.get("v", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RecordError(f"{where}: record version {version!r}; this lm-eval-temporal reads versions "
                              f"1 to {SCHEMA_VERSION} (upgrade the package)")
        if "answers" not in data:
            raise RecordError(f"{where}: record has no per-step 'answers'")
        answers = expand_runs(data["answers"], where)
        if not answers:
            raise RecordError(f"{where}: record has no steps ('answers' is empty)")
        steps = data.get("steps", len(answers))
        if not isinstance(steps, int) or steps < len(answers):
            raise RecordError(f"{where}: 'steps'={steps!r} must be an integer >= the {len(answers)} steps recorded")
        if data.get("steps_run", len(answers)) != len(answers):  # written since version 2; derived, so checked
            raise RecordError(f"{where}: 'steps_run'={data['steps_run']!r} but 'answers' holds {len(answers)} steps")
        schedule_steps = data.get("schedule_steps", steps)  # absent where it is steps, and from older records
        if not isinstance(schedule_steps, int) or isinstance(schedule_steps, bool) or schedule_steps < 1:
            raise RecordError(f"{where}: 'schedule_steps'={schedule_steps!r} must be a positive integer")
        vote_step = data.get("vote_step", len(answers) - 1)
        if not isinstance(vote_step, int) or not 0 <= vote_step < len(answers):
            vote_step = len(answers) - 1
        tse = data.get("tse")
        return cls(
            answer_task=str(data.get("answer_task") or "generic"),
            steps=steps,
            answers=answers,
            final=data.get("final", answers[-1]),
            vote=data.get("vote"),
            vote_step=vote_step,
            method=str(data.get("method") or "none"),
            tse=float(tse) if isinstance(tse, (int, float)) and not isinstance(tse, bool) else math.nan,
            task=data.get("task"),
            doc_id=data.get("doc_id"),
            gold=data.get("gold"),
            weights=data.get("weights"),
            final_text=data.get("final_text"),
            response=data.get("response"),
            step_texts=data.get("step_texts"),
            gate_kept_final=data.get("gate_kept_final"),
            gate_share=data.get("gate_share"),
            protocol=str(data.get("protocol") or "default"),
            schedule_steps=schedule_steps,
            tokens=_count(data, "tokens", where),
            nfe=_count(data, "nfe", where),
        )


def _count(data: dict[str, Any], name: str, where: str) -> int | None:
    value = data.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise RecordError(f"{where}: {name!r}={value!r} must be a non-negative integer")
    return value
