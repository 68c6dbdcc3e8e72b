"""What ``task_configs/`` calls: dataset loading (hub or local folder), prompts, metrics.

Every loader returns documents with the same fields, whatever the source:
``question`` (the problem as the paper words it), ``prompt`` (system prompt + question, the
paper's zero-shot user message), ``gold`` (normalised gold answer) and ``_temporal``
(``{"task": <answer parser>}``), the marker that tells the ``llada_temporal`` backend to
attach its temporal record (see :mod:`lm_eval_temporal.trace`).

Set ``LM_EVAL_TEMPORAL_DATA`` to a folder laid out like the package's offline data
(``gsm8k/test.jsonl``, ``svamp/test.jsonl``, ``math500/test.jsonl``,
``countdown/cd3_test.jsonl``) to read local JSON Lines instead of the Hugging Face Hub;
:func:`fetch_data` (``lm-eval-temporal fetch-data DIR``) builds that folder on a connected machine.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lm_eval_temporal import answers, metrics, trace
from lm_eval_temporal.errors import DataUnavailable

DATA_ENV = "LM_EVAL_TEMPORAL_DATA"

# The paper's zero-shot prompts, verbatim (including the space before the first newline in
# the GSM8K/SVAMP copy and the stray quote, space and newline at the end of the MATH500 copy).
_FORMAT = (
    "Respond in the following format:\n<reasoning>\nYour reasoning here\n</reasoning>\n"
    "<answer>\n\\boxed{...}\n</answer>"
)
_MATH_INTRO = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}."
)
SYSTEM_PROMPTS = {
    "gsm8k": _MATH_INTRO + " \n" + _FORMAT,
    "svamp": _MATH_INTRO + " \n" + _FORMAT,
    "math500": _MATH_INTRO + "\n" + _FORMAT + '" \n',
    "countdown": (
        "Using only the provided numbers, create an arithmetic expression that evaluates to "
        "exactly the provided target number. You may use the operations +, -, *, and / as "
        "needed, but each number must be used exactly once. Think step-by-step. After "
        "reasoning, provide only your final expression inside \\boxed{} tags without "
        "including an equals sign or the target number. For example: \\boxed{a + b * c}"
        + _FORMAT
    ),
}

# Hub sources (used when DATA_ENV is unset): (path, config name, split).
# (name, split) -> (hub dataset, config, split); the files under $LM_EVAL_TEMPORAL_DATA mirror them.
HUB = {
    ("gsm8k", "test"): ("openai/gsm8k", "main", "test"),
    ("gsm8k", "train"): ("openai/gsm8k", "main", "train"),
    ("svamp", "test"): ("ChilleD/SVAMP", None, "test"),
    ("svamp", "train"): ("ChilleD/SVAMP", None, "train"),
    ("math500", "test"): ("HuggingFaceH4/MATH-500", None, "test"),
}
# d1's 3-number Countdown test file (the paper evaluates exactly this file); it lives on GitHub.
COUNTDOWN_URL = (
    "https://raw.githubusercontent.com/dllm-reasoning/d1/"
    "837888f22c21a5da91a0af2b0d7b19e81d9b47ec/dataset/countdown_cd3_test.jsonl"
)
LOCAL_FILES = {
    ("gsm8k", "test"): "gsm8k/test.jsonl",
    ("gsm8k", "train"): "gsm8k/train.jsonl",
    ("svamp", "test"): "svamp/test.jsonl",
    ("svamp", "train"): "svamp/train.jsonl",
    ("math500", "test"): "math500/test.jsonl",
    ("countdown", "test"): "countdown/cd3_test.jsonl",
}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, ASCII (as the package's offline copies are), written whole or
    not at all: an interrupted download never leaves a short file that reads as complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(part, path)


def offline_hint(files: str) -> str:
    """What to do without the network: the variable, and the command that builds the folder."""
    return (f"Offline, set {DATA_ENV} to a folder holding {files}; build it on a connected machine "
            f"with `lm-eval-temporal fetch-data DIR` and copy it over.")


def hub_rows(name: str, split: str = "test", *, then: str | None = None) -> list[dict[str, Any]]:
    """A benchmark split from its usual source (the Hub; d1's file on GitHub for Countdown),
    rows as served; :class:`~lm_eval_temporal.errors.DataUnavailable` when it cannot be reached,
    ending with ``then`` (default: how to run offline)."""
    import datasets

    try:
        if name == "countdown":
            ds = datasets.load_dataset("json", data_files={"test": COUNTDOWN_URL}, split="test")
        else:
            path, config, hub_split = HUB[name, split]
            ds = datasets.load_dataset(path, config, split=hub_split)
    except Exception as exc:
        raise DataUnavailable(f"could not load the {name} {split} split from the network ({type(exc).__name__}: "
                              f"{exc}). {then or offline_hint(LOCAL_FILES[name, split])}") from exc
    return list(ds)


def raw_rows(name: str, split: str = "test", data_dir: str | None = None) -> list[dict[str, Any]]:
    """The rows of a benchmark split: from ``data_dir`` (default ``$LM_EVAL_TEMPORAL_DATA``)
    when a folder is given, laid out like the package's offline data, else from the Hub."""
    if (name, split) not in LOCAL_FILES:
        known = ", ".join(f"{n}/{s}" for n, s in LOCAL_FILES)
        raise ValueError(f"no {split} split for {name!r}; known: {known}")
    rel = LOCAL_FILES[name, split]
    folder = data_dir or os.environ.get(DATA_ENV, "").strip()
    if not folder:
        return hub_rows(name, split)
    path = Path(folder).expanduser() / rel
    if not path.is_file():
        source = "data_dir" if data_dir else DATA_ENV
        raise FileNotFoundError(
            f"{source}={folder!r} but {path} does not exist; the folder must be laid "
            f"out like the package's offline data (expected file: {rel})"
        )
    return _read_jsonl(path)


def fetch_data(out_dir: str | Path, *, overwrite: bool = False) -> list[tuple[Path, bool]]:
    """Build the offline folder :data:`DATA_ENV` reads: every split of :data:`LOCAL_FILES` from
    its usual source, at its path under ``out_dir``. Files already there are kept unless
    ``overwrite`` (so an interrupted download resumes). Returns (path, written) per file."""
    out = Path(out_dir).expanduser()
    done = []
    for (name, split), rel in LOCAL_FILES.items():
        path = out / rel
        if path.is_file() and not overwrite:
            done.append((path, False))
            continue
        _write_jsonl(path, hub_rows(name, split, then="fetch-data needs a machine that reaches the Hugging Face "
                                                        "Hub and raw.githubusercontent.com."))
        done.append((path, True))
    return done


def _mirrored(path: str | None, name: str | None) -> dict[str, str]:
    """split -> file under :data:`DATA_ENV` of a Hub dataset the offline folder holds (lm-eval's
    ``gsm8k`` and ``gsm8k_cot*`` read ``openai/gsm8k`` main); empty for others."""
    return {split: rel for (task, split), rel in LOCAL_FILES.items() if HUB.get((task, split), (None,))[:2] == (path, name)}


def offline_mirror(path: str | None, name: str | None):
    """The splits of a Hub dataset that ``$LM_EVAL_TEMPORAL_DATA`` holds, as a DatasetDict, for
    lm-eval's built-in tasks, rows as the Hub serves them. None when the variable is unset or
    the dataset is not one of ours; an error naming the variable and the file when the folder
    lacks it."""
    folder = os.environ.get(DATA_ENV, "").strip()
    splits = _mirrored(path, name)
    if not folder or not splits:
        return None
    import datasets

    missing = [rel for rel in splits.values() if not (Path(folder).expanduser() / rel).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{DATA_ENV}={folder!r} is set, so {path} is read from it, but {Path(folder) / missing[0]} does not exist. "
            f"Add the file, unset {DATA_ENV} to use the Hub, or use this package's gsm8k_temporal task.")
    return datasets.DatasetDict({split: datasets.Dataset.from_list(_read_jsonl(Path(folder).expanduser() / rel))
                                 for split, rel in splits.items()})


def hub_failure(path: str | None, name: str | None, exc: BaseException) -> DataUnavailable | None:
    """The error to raise when lm-eval could not download a Hub dataset that the offline folder
    can hold, naming :data:`DATA_ENV`; None for other datasets (lm-eval's error stands)."""
    splits = _mirrored(path, name)
    if not splits:
        return None
    config = f" ({name})" if name else ""
    return DataUnavailable(f"could not load {path}{config} from the Hugging Face Hub "
                           f"({type(exc).__name__}: {exc}). {offline_hint(' and '.join(splits.values()))}")


def _docs(task: str, rows: Iterable[dict[str, Any]], question: Callable, gold: Callable):
    import datasets

    system = SYSTEM_PROMPTS[task]
    docs = []
    for row in rows:
        q = question(row)
        docs.append({
            "question": q,
            "prompt": system + "\n\n" + q,
            "gold": json.dumps(answers.normalize_gold(gold(row), task)),
            trace.TRACE_KEY: {"task": task},
        })
    return {"test": datasets.Dataset.from_list(docs)}


# lm-eval calls custom_dataset(**metadata, **dataset_kwargs); extra keys are ignored.
def load_gsm8k(**_: Any):
    return _docs("gsm8k", raw_rows("gsm8k"), lambda r: r["question"], lambda r: r["answer"])


def load_svamp(**_: Any):
    def question(r):
        return r.get("question_concat") or (r["Body"].strip() + " " + r["Question"].strip())

    return _docs("svamp", raw_rows("svamp"), question, lambda r: r["Answer"])


def load_math500(**_: Any):
    return _docs("math500", raw_rows("math500"), lambda r: r["problem"], lambda r: r["answer"])


def load_countdown(**_: Any):
    def numbers(r):
        return [int(x) for x in str(r["input"]).split(",")]

    return _docs(
        "countdown",
        raw_rows("countdown"),
        lambda r: f"Numbers: {numbers(r)}\nTarget: {int(r['output'])}",
        lambda r: [numbers(r), int(r["output"])],
    )


def load_arith_chain(n: int = 300, seed: int = 1234, **_: Any):
    import datasets

    from lm_eval_temporal.tiny import arith

    docs = [
        {
            "question": d["question"],
            "prompt": arith.prompt_text(d["question"]),
            "gold": json.dumps(answers.normalize_gold(d["answer"], "gsm8k")),
            "level": d["level"],
            trace.TRACE_KEY: {"task": "gsm8k"},
        }
        for d in arith.eval_docs(n=int(n), seed=int(seed))
    ]
    return {"test": datasets.Dataset.from_list(docs)}


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """exact_match scores the returned text (the vote when voting is on); the temporal
    metrics come from the backend's trace and are NaN for backends that produce none."""
    task, gold = trace.doc_marker(doc)
    text, record = trace.split(results[0])
    protocol = record.protocol if record is not None else "default"
    out = {"exact_match": float(answers.is_correct(text, gold, task, protocol=protocol))}
    if record is None:
        out.update(final_pass=math.nan, ever_pass=math.nan, tse=math.nan, steps_saved=math.nan, nfe=math.nan,
                   tpf=(0, 0))
        return out
    s = metrics.score(record, gold, task=task)
    out.update(final_pass=float(s.final_pass), ever_pass=float(s.ever_pass), tse=float(s.tse),
               steps_saved=record.steps_saved, nfe=math.nan if record.nfe is None else float(record.nfe),
               tpf=(record.tokens or 0, record.nfe or 0))
    return out


def tokens_per_forward(items: list[tuple[int, int]]) -> float:
    """lm-eval aggregation of ``tpf``: summed valid output tokens over summed forward passes of
    the whole task (the leaderboard's rule), not a mean of per-sample ratios; NaN without any
    forward pass recorded."""
    tokens, passes = (sum(col) for col in zip(*items)) if items else (0, 0)
    return tokens / passes if passes else math.nan
