"""Shared by the benchmark scripts: real lm-eval requests built by lm-eval's own task machinery,
the backend, thread settings and scoring."""

from __future__ import annotations

import copy
from typing import Any

from lm_eval.api.instance import Instance

# --quick runs (the test suite): short generations, so a script runs in seconds.
QUICK_GEN = {"gen_length": 16, "steps": 4, "block_length": 16}


def task_requests(task: str, limit: int | None) -> list[Instance]:
    """The generate_until Instances lm-eval would send for the first `limit` docs of `task`
    (all of them with limit=None)."""
    from pathlib import Path

    from lm_eval.tasks import TaskManager, get_task_dict

    import lm_eval_temporal

    # Our own tasks index in milliseconds; lm-eval's full index takes seconds.
    ours = TaskManager(include_path=str(Path(lm_eval_temporal.__file__).parent / "task_configs"), include_defaults=False)
    manager = ours if task in ours.all_tasks else TaskManager()
    t = get_task_dict([task], manager)[task]
    t.build_all_requests(limit=limit, rank=0, world_size=1)
    return [inst for inst in t.instances if inst.request_type == "generate_until"]


def unmarked(requests: list[Instance]) -> list[Instance]:
    """Copies without our task marker: the backend then does plain denoising (no capture,
    no trace), which is the baseline the temporal machinery is measured against."""
    out = []
    for r in requests:
        doc = {k: v for k, v in r.doc.items() if k != "_temporal"}
        out.append(Instance(r.request_type, doc, copy.deepcopy(r.arguments), r.idx, (r.task_name, r.doc_id, r.repeats)))
    return out


def set_threads(n: int | None) -> int:
    """Pin torch's intra-op threads (None: leave torch's default); return the count in use.
    Set before any model runs, and the same for every arm of a comparison."""
    import torch

    if n:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set (or parallel work already started)
            pass
    return torch.get_num_threads()


def model_args(text: str) -> dict[str, Any]:
    """``k=v,k=v`` (lm-eval's --model_args syntax) -> dict."""
    from lm_eval.utils import simple_parse_args_string

    return simple_parse_args_string(text) if text else {}


def score(requests: list[Instance], responses: list[str]) -> list[dict[str, float]]:
    """Per-request metrics exactly as our task configs compute them (exact_match = the
    returned text, i.e. the vote when voting is on; final_pass; ever_pass; tse)."""
    from lm_eval_temporal.tasks import process_results

    return [process_results(r.doc, [resp]) for r, resp in zip(requests, responses)]
