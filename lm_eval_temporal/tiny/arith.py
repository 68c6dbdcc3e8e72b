"""Seeded procedural multi-step arithmetic problems (the ``arith_chain`` task).

A problem is a left-to-right chain of additions and subtractions, e.g. ``"12+35-7"``.
Its worked solution evaluates one operator at a time, so every intermediate result is
written down and reused by the next step, and ends with a GSM8K-style answer line::

    question  "12+35-7"
    target    "12+35=47;47-7=40;#### 40"
    answer    "40"

Levels (number of operations): 1 = ``a+b``, 2 = ``a+b-c``, 3 = ``a+b-c+d``. The first
operand is 1..40, every further operand 1..9, and each operation is chosen (at random among
those allowed) so that the running value stays within 0..40: the worked solution fits in
32 tokens.

Evaluation / training split, disjoint by construction: a problem is an *evaluation*
problem iff ``split_of(question) == "eval"``, a hash of the canonical question string
(:func:`is_eval_question`). :func:`eval_docs` only emits such problems and
:func:`training_stream` rejects them, so no seed of either can ever produce a problem of
the other split.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

__all__ = [
    "LEVELS",
    "EVAL_BUCKETS",
    "EVAL_WEIGHTS",
    "make_problem",
    "solve",
    "is_eval_question",
    "split_of",
    "eval_docs",
    "training_stream",
    "prompt_text",
    "response_text",
]

LEVELS = (1, 2, 3)
# Mix of levels in the evaluation documents and (by default) in training.
EVAL_WEIGHTS = {1: 0.15, 2: 0.35, 3: 0.50}
# One bucket in EVAL_BUCKETS (of the hash's value modulo EVAL_BUCKETS) is reserved for evaluation.
EVAL_BUCKETS = 8
_SALT = "lm_eval_temporal.arith_chain.v3:"
MAX_VALUE = 40  # first operand and every running value lie in 0..MAX_VALUE
MAX_STEP_OPERAND = 9


def prompt_text(question: str) -> str:
    """The exact prompt the tiny model is trained on and the ``arith_chain`` task sends."""
    return f"Q:{question}=?\nA:"


def response_text(target: str) -> str:
    """The response the model is trained to produce (EOS padding is added by the trainer)."""
    return target


def solve(question: str) -> tuple[str, int]:
    """Worked solution and value of a canonical question such as ``"12+35-7"``."""
    tokens: list[str] = []
    num = ""
    for ch in question:
        if ch.isdigit():
            num += ch
        elif ch in "+-":
            if not num:
                raise ValueError(f"malformed question {question!r}")
            tokens += [num, ch]
            num = ""
        else:
            raise ValueError(f"malformed question {question!r}")
    if not num:
        raise ValueError(f"malformed question {question!r}")
    tokens.append(num)
    value = int(tokens[0])
    parts = []
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        b = int(operand)
        new = value + b if op == "+" else value - b
        parts.append(f"{value}{op}{b}={new};")
        value = new
    return "".join(parts) + f"#### {value}", value


def make_problem(rng: random.Random, level: int) -> dict:
    """One problem of ``level`` operations drawn from ``rng`` (either split)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level}")
    value = rng.randint(1, MAX_VALUE)
    question = str(value)
    for _ in range(level):
        b = rng.randint(1, MAX_STEP_OPERAND)
        ops = [op for op, ok in (("+", value + b <= MAX_VALUE), ("-", value - b >= 0)) if ok]
        op = ops[0] if len(ops) == 1 else rng.choice(ops)
        value = value + b if op == "+" else value - b
        question += f"{op}{b}"
    target, answer = solve(question)
    assert answer == value
    return {"question": question, "answer": str(answer), "target": target, "level": level}


def _bucket(question: str) -> int:
    digest = hashlib.sha256((_SALT + question).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % EVAL_BUCKETS


def is_eval_question(question: str) -> bool:
    """Whether the canonical question string belongs to the reserved evaluation split."""
    return _bucket(question) == 0


def split_of(question: str) -> str:
    return "eval" if is_eval_question(question) else "train"


def _pick_level(rng: random.Random, weights: dict[int, float]) -> int:
    levels = sorted(weights)
    return rng.choices(levels, weights=[weights[k] for k in levels])[0]


def eval_docs(n: int = 300, seed: int = 1234, weights: dict[int, float] | None = None) -> list[dict]:
    """``n`` distinct evaluation problems, deterministic in ``(n, seed)``.

    Level counts follow ``weights`` (default :data:`EVAL_WEIGHTS`) exactly up to rounding,
    interleaved in a seeded order; every problem lies in the evaluation hash bucket.
    """
    weights = dict(EVAL_WEIGHTS if weights is None else weights)
    rng = random.Random(f"arith_chain-eval-{seed}")
    total = sum(weights.values())
    levels: list[int] = []
    for k in sorted(weights):
        levels += [k] * round(n * weights[k] / total)
    while len(levels) < n:
        levels.append(max(weights, key=weights.get))
    levels = levels[:n]
    rng.shuffle(levels)
    seen: set[str] = set()
    docs = []
    for level in levels:
        for _ in range(100_000):
            p = make_problem(rng, level)
            if is_eval_question(p["question"]) and p["question"] not in seen:
                break
        else:
            raise ValueError(f"not enough distinct level-{level} evaluation problems for n={n}")
        seen.add(p["question"])
        docs.append(p)
    return docs


def training_stream(seed: int = 0, weights: dict[int, float] | None = None) -> Iterator[dict]:
    """Endless seeded stream of training problems; never yields an evaluation problem."""
    weights = dict(EVAL_WEIGHTS if weights is None else weights)
    rng = random.Random(f"arith_chain-train-{seed}")
    while True:
        p = make_problem(rng, _pick_level(rng, weights))
        if not is_eval_question(p["question"]):
            yield p
