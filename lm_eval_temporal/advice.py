"""Runs whose numbers would mean nothing are refused, or said so, instead of ending in a quiet
table of zeros.

- Before any forward pass: ``protocol=paper`` on a request whose answer parser it has no
  rules for is refused; on prompts that ask for neither ``\\boxed{}`` nor ``<answer>`` (the only
  places the paper's gsm8k/svamp parsers read) it is warned about; the embedded model on a task
  it was not trained for is warned about, with the command for the paper's model.
- After the requests: a task most of whose returned answers parse to nothing is warned about,
  with the likely cause.

Each warning is given once per :class:`RunAdvice` (one per backend). Torch-free.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from lm_eval_temporal import answers
from lm_eval_temporal.answers import paper
from lm_eval_temporal.errors import OptionError

__all__ = ["EMBEDDED_TASK", "REAL_MODEL_ARGS", "Request", "RunAdvice", "real_model_command"]

log = logging.getLogger("lm_eval.models.llada_temporal")

EMBEDDED_TASK = "arith_chain"  # the one task the embedded model was trained for
# LLaDA-8B-Instruct with the paper's settings (gen_length 256, steps = gen_length / 2, blocks of 32).
REAL_MODEL_ARGS = "pretrained=GSAI-ML/LLaDA-8B-Instruct,gen_length=256,steps=128,block_length=32"
_PAPER_MARKS = ("\\boxed", "<answer>")


def real_model_command(tasks: str) -> str:
    """The command that evaluates ``tasks`` with the paper's model and settings."""
    return f"lm_eval --model llada_temporal --model_args {REAL_MODEL_ARGS} --tasks {tasks} --apply_chat_template"


@dataclass(frozen=True)
class Request:
    """What the checks need of one request: lm-eval's task name (None outside lm-eval), the
    answer parser it is read with and its prompt."""

    task: str | None
    answer_task: str
    prompt: str

    @property
    def label(self) -> str:
        return self.task or self.answer_task


def _names(labels) -> str:
    return ", ".join(sorted(set(labels)))


def paper_error(protocol: str, requests: Sequence[Request]) -> str | None:
    """Why ``protocol`` cannot read these requests' answers at all, or None."""
    if protocol != "paper":
        return None
    bad = {r.label: r.answer_task for r in requests if r.answer_task not in paper.TASKS}
    if not bad:
        return None
    which = "; ".join(f"{t} (answer parser {p!r})" for t, p in sorted(bad.items()))
    return (f"model argument protocol=paper: the paper's official parsers exist for {', '.join(paper.TASKS)} only, "
            f"not for task(s) {which}. Use protocol=default, or answer_task=... to read them as one of those.")


def paper_unreadable(protocol: str, requests: Sequence[Request]) -> list[str]:
    """The tasks whose prompts ask for neither ``\\boxed{}`` nor ``<answer>`` under the paper protocol."""
    if protocol != "paper":
        return []
    return sorted({r.label for r in requests if not any(m in r.prompt for m in _PAPER_MARKS)})


def embedded_mismatch(requests: Sequence[Request]) -> list[str]:
    """The lm-eval tasks the embedded model was not trained for."""
    return sorted({r.task for r in requests if r.task and r.task != EMBEDDED_TASK})


class RunAdvice:
    """The checks of one backend: :meth:`before` the forward passes of a ``generate_until`` call,
    :meth:`count` per returned response, :meth:`after` the call."""

    def __init__(self, protocol: str, embedded: bool) -> None:
        self.protocol = protocol
        self.embedded = embedded
        self._said: set[tuple[str, str]] = set()
        self._answered: Counter[str] = Counter()
        self._empty: Counter[str] = Counter()
        self._parsers: dict[str, str] = {}

    def _once(self, kind: str, tasks: Sequence[str]) -> list[str]:
        new = [t for t in tasks if (kind, t) not in self._said]
        self._said.update((kind, t) for t in new)
        return new

    def before(self, requests: Sequence[Request]) -> None:
        """Refuse (:class:`~lm_eval_temporal.errors.OptionError`) or warn about the run, once."""
        err = paper_error(self.protocol, requests)
        if err:
            raise OptionError(err)
        unread = self._once("paper", paper_unreadable(self.protocol, requests))
        if unread:
            log.warning("llada_temporal: protocol=paper reads answers only from \\boxed{...} and <answer>...</answer> "
                        "(the official parsers), and the prompts of %s ask for neither: expect exact_match near 0 and "
                        "the maximum TSE. Use protocol=default (this package's reading) for these tasks.", _names(unread))
        foreign = self._once("embedded", embedded_mismatch(requests)) if self.embedded else []
        if foreign:
            log.warning("llada_temporal: no pretrained= given, so this runs the embedded 1.9M-parameter arithmetic "
                        "model, trained for %s only: it scores about 0 on %s. For the paper's model run: %s",
                        EMBEDDED_TASK, _names(foreign), real_model_command(",".join(foreign)))

    def count(self, request: Request, response: str) -> None:
        """Tally whether a returned response (without its trace) states an answer."""
        self._answered[request.label] += 1
        self._parsers[request.label] = request.answer_task
        if answers.extract_answer(response, request.answer_task, self.protocol) is None:
            self._empty[request.label] += 1

    def _cause(self, task: str) -> str:
        if self.protocol == "paper":
            return ("protocol=paper reads only \\boxed{...} and <answer>...</answer>; if the generations hold neither, "
                    "use protocol=default")
        if self.embedded and task != EMBEDDED_TASK:
            return f"the embedded model is trained for {EMBEDDED_TASK} only (pass {REAL_MODEL_ARGS} for the paper's model)"
        return (f"the generations do not state an answer the {self._parsers[task]!r} parser reads (cut short by "
                "gen_length, or a prompt that asks for another form); look at a few with --log_samples")

    def after(self) -> None:
        """Warn, once per task, when most of its responses since the last call parsed to nothing."""
        empty = [t for t in sorted(self._answered) if 2 * self._empty[t] > self._answered[t]]
        for task in self._once("empty", empty):
            log.warning("llada_temporal: %d of %d answers of %s parsed to nothing, so its accuracy is near 0 (and its "
                        "TSE, where reported, the maximum). Likely cause: %s.", self._empty[task],
                        self._answered[task], task, self._cause(task))
        self._answered.clear()
        self._empty.clear()
