"""Real lm-eval requests for the benchmarks: built by lm-eval's own task machinery."""

from __future__ import annotations

import copy

from lm_eval.api.instance import Instance


def task_requests(task: str, limit: int) -> list[Instance]:
    """The generate_until Instances lm-eval would send for the first `limit` docs of `task`."""
    from lm_eval.tasks import TaskManager, get_task_dict

    t = get_task_dict([task], TaskManager())[task]
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
