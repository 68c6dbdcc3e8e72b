"""Training prompts for TCR: GSM8K train, SVAMP train, generated ``arith_chain`` or ``countdown`` problems.

The prompts are worded exactly as the evaluation tasks word them (``lm_eval_temporal.tasks``
system prompts, ``arith.prompt_text``), so what is trained is what is evaluated. GSM8K/SVAMP
read ``<dir>/gsm8k/train.jsonl`` / ``<dir>/svamp/train.jsonl`` when ``data_dir`` or
``$LM_EVAL_TEMPORAL_DATA`` names a folder, else the Hugging Face Hub. ``arith_chain`` and
``countdown`` are generated offline (:mod:`lm_eval_temporal.tiny.arith`,
:mod:`lm_eval_temporal.tcr.countdown`); neither generator ever yields an evaluation problem.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from lm_eval_temporal import answers
from lm_eval_temporal.tasks import SYSTEM_PROMPTS, raw_rows

__all__ = ["Problem", "load_problems", "format_prompt", "PromptOrder", "ARITH_POOL_DEFAULT"]

ARITH_POOL_DEFAULT = 5000


@dataclass(frozen=True)
class Problem:
    question: str
    user_prompt: str  # the user message (system prompt + question), before any chat template
    gold: Any  # normalised gold answer, as answers.is_correct expects it


def load_problems(dataset: str, *, data_dir: str | None = None, limit: int | None = None, seed: int = 0) -> list[Problem]:
    """The training problems of ``dataset`` (``arith_chain``, ``gsm8k``, ``svamp`` or ``countdown``).

    ``limit`` keeps the first ``limit`` rows (for the generated ``arith_chain`` and ``countdown``:
    the size of the pool, default 5000, drawn from training stream ``seed``)."""
    if dataset == "countdown":
        from lm_eval_temporal.tcr import countdown

        stream = countdown.training_stream(seed=seed)
        qa = []
        for _ in range(limit or ARITH_POOL_DEFAULT):
            p = next(stream)
            gold = answers.normalize_gold([p["numbers"], p["target"]], "countdown")
            qa.append((countdown.question_text(p["numbers"], p["target"]), gold))
    elif dataset == "arith_chain":
        from lm_eval_temporal.tiny import arith

        stream = arith.training_stream(seed=seed)
        out = []
        for _ in range(limit or ARITH_POOL_DEFAULT):
            p = next(stream)
            out.append(Problem(p["question"], arith.prompt_text(p["question"]), answers.normalize_gold(p["answer"], "gsm8k")))
        return out
    elif dataset == "gsm8k":
        rows = raw_rows("gsm8k", "train", data_dir)
        qa = [(r["question"], answers.normalize_gold(r["answer"], "gsm8k")) for r in rows]
    elif dataset == "svamp":
        rows = raw_rows("svamp", "train", data_dir)
        # Same wording as the svamp evaluation task: Body + " " + Question.
        qa = [
            (r.get("question_concat") or (r["Body"].strip() + " " + r["Question"].strip()),
             answers.normalize_gold(r["Answer"], "svamp"))
            for r in rows
        ]
    else:
        raise ValueError(f"dataset {dataset!r}: expected arith_chain, gsm8k, svamp or countdown")
    if limit:
        qa = qa[:limit]
    system = SYSTEM_PROMPTS[dataset]
    return [Problem(q, system + "\n\n" + q, g) for q, g in qa]


def format_prompt(user_prompt: str, tokenizer: Any, *, chat_template: bool, gen_prefix: str) -> str:
    """The text the sampler continues, built as lm-eval builds it for our tasks: the chat
    template's generation prompt followed by ``gen_prefix``; without a chat template the
    prefix follows the question after a space (lm-eval's target delimiter)."""
    if chat_template:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_prompt}], tokenize=False, add_generation_prompt=True
        )
        return text + gen_prefix
    if not gen_prefix:
        return user_prompt
    if user_prompt[-1:].isspace() or gen_prefix[:1].isspace():
        return user_prompt + gen_prefix
    return user_prompt + " " + gen_prefix


class PromptOrder:
    """Which problems each rollout round uses: epochs of seeded shuffles, a pure function of
    the round number, so a resumed run sees exactly the prompts the uninterrupted run would."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("no training problems")
        self.n, self.seed = n, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            idx = list(range(self.n))
            random.Random(f"tcr-prompts:{self.seed}:{epoch}").shuffle(idx)
            self._perms = {epoch: idx}  # keep one epoch: rounds only move forward
        return self._perms[epoch]

    def indices(self, start: int, count: int) -> list[int]:
        """Positions ``start .. start+count-1`` of the endless shuffled order."""
        out = []
        for pos in range(start, start + count):
            out.append(self._perm(pos // self.n)[pos % self.n])
        return out
