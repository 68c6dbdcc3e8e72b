"""The refactored pipeline gives the pre-refactor backend's outputs, token for token.

``golden/arith_chain_24.json`` holds what the backend returned (responses with their traces,
and trajectory lines) on the first 24 ``arith_chain`` problems with the embedded model, under
seven settings (default exp vote, gated vote, both early stops, sampling with random
remasking, exact clusters with a linear vote and step texts, CFG with a fixed vote), recorded
with the code before the one-pipeline refactor (commit 53573b7). Both record versions are read
through ``TemporalRecord.from_json``, so the comparison is of content, not of encodings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_eval.api.instance import Instance

from lm_eval_temporal import trace
from lm_eval_temporal.config import TemporalConfig
from lm_eval_temporal.pipeline import TemporalPipeline
from lm_eval_temporal.record import TemporalRecord

GOLDEN = json.loads((Path(__file__).parent / "golden" / "arith_chain_24.json").read_text(encoding="utf-8"))
FIELDS = ("answer_task", "steps", "answers", "final", "vote", "vote_step", "method", "tse", "task", "doc_id", "gold",
          "weights", "final_text", "response", "step_texts", "gate_kept_final", "gate_share")


@pytest.fixture(scope="module")
def requests():
    from lm_eval.tasks import TaskManager, get_task_dict

    import lm_eval_temporal

    manager = TaskManager(include_path=str(Path(lm_eval_temporal.__file__).parent / "task_configs"),
                          include_defaults=False)
    task = get_task_dict(["arith_chain"], manager)["arith_chain"]
    task.build_all_requests(limit=24, rank=0, world_size=1)
    return [inst for inst in task.instances if inst.request_type == "generate_until"]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_outputs_equal_the_pre_refactor_backend(name, requests, tmp_path):
    from lm_eval_temporal.backend import LLaDATemporalLM

    golden = GOLDEN[name]
    path = tmp_path / "t.jsonl"
    lm = LLaDATemporalLM(batch_size=8, trajectory_path=str(path), **golden["model_args"])
    responses = lm.generate_until(requests, disable_tqdm=True)
    assert len(responses) == len(golden["responses"])
    for i, (old, new) in enumerate(zip(golden["responses"], responses)):
        (old_text, old_rec), (new_text, new_rec) = trace.split(old), trace.split(new)
        assert new_text == old_text, (name, i)
        for f in ("answer_task", "steps", "answers", "final", "vote", "vote_step", "method", "tse"):
            assert getattr(new_rec, f) == getattr(old_rec, f), (name, i, f)
    lines = [TemporalRecord.from_json(json.loads(x)) for x in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == len(golden["trajectory"])
    for old_line, new in zip(golden["trajectory"], lines):
        old = TemporalRecord.from_json(old_line)
        for f in FIELDS:
            assert getattr(new, f) == getattr(old, f), (name, old.doc_id, f)
    if "plain_responses" in golden:  # unmarked documents with vote=none: plain denoising, no trace
        lm.pipeline = TemporalPipeline(lm.loaded, TemporalConfig(vote="none"))
        plain = [Instance(r.request_type, {}, r.arguments, r.idx, (r.task_name, r.doc_id, r.repeats))
                 for r in requests[:8]]
        assert lm.generate_until(plain, disable_tqdm=True) == golden["plain_responses"]
