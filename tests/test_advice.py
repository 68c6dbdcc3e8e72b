"""Runs that would measure nothing are refused or said so (lm_eval_temporal.advice), before any
forward pass where the cause is known at start, and the results JSON says where the model ran
and which tasks each schedule served."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from lm_eval.api.instance import Instance

from lm_eval_temporal import advice, trace
from lm_eval_temporal.backend import LLaDATemporalLM
from lm_eval_temporal.errors import OptionError

GEN = dict(gen_length=16, steps=8, block_length=8)
PAPER_PROMPT = "Solve it. Wrap the final answer in a \\boxed{}.\n<answer>\n\\boxed{...}\n</answer>\n\nTom has 3 apples."


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("tiny_llada"))


def req(context: str, task: str, doc: dict | None = None, doc_id: int = 0, max_gen_toks: int = 16) -> Instance:
    gk = {"until": [], "max_gen_toks": max_gen_toks, "do_sample": False}
    return Instance("generate_until", doc or {}, (context, gk), doc_id, (task, doc_id, 1))


def marked(answer_task: str = "gsm8k", gold: str = "5") -> dict:
    return {"gold": json.dumps(gold), trace.TRACE_KEY: {"task": answer_task}}


def forward_calls(lm: LLaDATemporalLM, fail: bool = False) -> list[int]:
    """Counts the model's forward passes (and with ``fail``, stops at the first one)."""
    calls: list[int] = []

    def hook(*_):
        calls.append(1)
        if fail:
            raise RuntimeError("a forward pass ran")

    lm.loaded.model.register_forward_pre_hook(hook)
    return calls


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------- defect 5: protocol=paper
def test_paper_protocol_on_a_task_it_cannot_parse_is_refused_before_any_forward_pass(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), protocol="paper", **GEN)
    calls = forward_calls(lm)
    # "wordsort" has no answer parser of its own: read by "generic", which the paper never defined.
    with pytest.raises(OptionError, match=r"protocol=paper: .*gsm8k, svamp, math500, countdown only.*wordsort "
                                          r"\(answer parser 'generic'\).*protocol=default") as info:
        lm.generate_until([req(PAPER_PROMPT, "svamp", marked("svamp")), req("sort: b a", "wordsort")],
                          disable_tqdm=True)
    assert isinstance(info.value, ValueError)  # library callers catch ValueError
    assert calls == []


def test_paper_protocol_on_prompts_without_boxes_or_tags_warns_once_before_any_forward_pass(caplog):
    lm = LLaDATemporalLM(protocol="paper")  # the embedded model, on its own task
    forward_calls(lm, fail=True)
    arith = [req("Q:12+5-7=?\nA:", "arith_chain", marked(), doc_id=i) for i in range(2)]
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="a forward pass ran"):
        lm.generate_until(arith, disable_tqdm=True)
    (said,) = [m for m in warnings_of(caplog) if "protocol=paper" in m]
    assert "prompts of arith_chain ask for neither" in said and "protocol=default" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError):
        lm.generate_until(arith, disable_tqdm=True)
    assert not [m for m in warnings_of(caplog) if "protocol=paper" in m]  # once


def test_paper_protocol_on_its_own_prompts_says_nothing_at_start():
    reqs = [advice.Request("svamp", "svamp", PAPER_PROMPT), advice.Request("math500", "math500", "... \\boxed{} ...")]
    assert advice.paper_error("paper", reqs) is None and advice.paper_unreadable("paper", reqs) == []
    assert advice.paper_unreadable("default", [advice.Request("arith_chain", "gsm8k", "Q:1+1=?")]) == []


# ---------------------------------------------------------------- defect 11: the embedded model
def test_embedded_model_on_a_task_it_was_not_trained_for_warns_once_with_the_real_command(caplog):
    lm = LLaDATemporalLM()
    forward_calls(lm, fail=True)
    reqs = [req("Question: Janet has 16 eggs...", "gsm8k"), req("Tom has 3 apples.", "svamp", marked("svamp")),
            req("Q:1+2=?\nA:", "arith_chain", marked())]
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="a forward pass ran"):
        lm.generate_until(reqs, disable_tqdm=True)
    (said,) = [m for m in warnings_of(caplog) if "embedded" in m]
    assert "trained for arith_chain only: it scores about 0 on gsm8k, svamp" in said
    assert ("lm_eval --model llada_temporal --model_args pretrained=GSAI-ML/LLaDA-8B-Instruct,gen_length=256,"
            "steps=128,block_length=32 --tasks gsm8k,svamp --apply_chat_template") in said
    caplog.clear()
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError):
        lm.generate_until(reqs, disable_tqdm=True)
    assert not [m for m in warnings_of(caplog) if "embedded" in m]


def test_embedded_model_on_arith_chain_says_nothing(caplog):
    lm = LLaDATemporalLM(batch_size=3)
    with caplog.at_level(logging.WARNING):
        out = lm.generate_until([req(f"Q:{i}+2=?\nA:", "arith_chain", marked(gold=str(i + 2)), doc_id=i) for i in range(3)],
                                disable_tqdm=True)
    assert len(out) == 3 and warnings_of(caplog) == []


# ---------------------------------------------------------------- defect 12: answers that parse to nothing
def test_a_task_whose_answers_parse_to_nothing_is_said_once_at_the_end_with_the_cause(tiny_dir, caplog):
    # A random model never writes \boxed{..} or <answer> tags: the paper's parsers read nothing.
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), protocol="paper", batch_size=2, **GEN)
    reqs = [req(PAPER_PROMPT + str(i), "svamp", marked("svamp"), doc_id=i) for i in range(3)]
    with caplog.at_level(logging.WARNING):
        lm.generate_until(reqs, disable_tqdm=True)
    (said,) = [m for m in warnings_of(caplog) if "parsed to nothing" in m]
    assert said.startswith("llada_temporal: 3 of 3 answers of svamp parsed to nothing")
    assert "Likely cause: protocol=paper reads only \\boxed{...} and <answer>...</answer>" in said


def test_parse_tally_needs_most_answers_empty_and_names_the_parser(caplog):
    run = advice.RunAdvice("default", embedded=False)
    for text in ("The answer is 5.", "no idea", "#### 7"):
        run.count(advice.Request("svamp", "svamp", "p"), text)
    for text in ("", "nothing here"):
        run.count(advice.Request("mine", "gsm8k", "p"), text)
    with caplog.at_level(logging.WARNING):
        run.after()
    (said,) = warnings_of(caplog)
    assert "2 of 2 answers of mine parsed to nothing" in said and "the 'gsm8k' parser" in said
    embedded = advice.RunAdvice("default", embedded=True)
    embedded.count(advice.Request("gsm8k", "gsm8k", "p"), "so on")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        embedded.after()
    assert "the embedded model is trained for arith_chain only" in warnings_of(caplog)[0]


# ---------------------------------------------------------------- defect 12: what the results JSON records
def test_results_record_the_device_used_and_the_tasks_of_each_schedule(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), device="cpu", gen_length=None, steps=None, block_length=8)
    lm.generate_until([req("a", "svamp", max_gen_toks=16), req("b", "gsm8k", max_gen_toks=8),
                       req("c", "math500", max_gen_toks=16)], disable_tqdm=True)
    info = lm.get_model_info()["llada_temporal"]
    assert info["device"] == "cpu" and "device_note" not in info
    assert sorted((s["gen_length"], s["tasks"]) for s in info["schedules"]) == [(8, ["gsm8k"]), (16, ["math500", "svamp"])]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_results_say_where_a_cpu_run_ran_when_lm_eval_passed_cuda(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), device="cuda:0", **GEN)  # what lm-eval passes by default
    info = lm.get_model_info()["llada_temporal"]
    assert info["device"] == "cpu" and info["device_note"] == "config.device=cuda:0 was asked for; the model ran on cpu"
