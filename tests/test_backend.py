"""The lm-eval backend on a tiny locally built LLaDA: in-process contract tests."""

from __future__ import annotations

import json
import re

import pytest
import torch
from lm_eval.api.instance import Instance

from lm_eval_temporal import trace
from lm_eval_temporal.backend import LLaDATemporalLM
from lm_eval_temporal.record import TemporalRecord

GEN = dict(gen_length=16, steps=8, block_length=8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("tiny_llada"))


def req(context: str, doc: dict | None = None, task: str = "svamp", doc_id: int = 0, gen_kwargs: dict | None = None) -> Instance:
    gk = {"until": [], "max_gen_toks": 16, "do_sample": False} if gen_kwargs is None else gen_kwargs
    return Instance("generate_until", doc if doc is not None else {}, (context, gk), doc_id, (task, doc_id, 1))


def marked_doc(gold: str = "5") -> dict:
    return {"gold": json.dumps(gold), trace.TRACE_KEY: {"task": "gsm8k"}}


def script_trajectory(monkeypatch, traj: torch.Tensor) -> None:
    """Make the pipeline's sampler return ``traj`` [1, steps, G] as the captured steps (and its
    last step as the output), whatever the model predicts."""
    import lm_eval_temporal.families.llada as llada

    real = llada.generate

    def fake_generate(model, input_ids, attention_mask=None, **kw):
        out = real(model, input_ids, attention_mask, **kw)
        out.sequences[:, -traj.shape[-1]:] = traj[:, -1].long()
        out.trajectory = traj.clone()
        return out

    monkeypatch.setattr(llada, "generate", fake_generate)


PROMPTS = ["Q:1+2=?", "Q:a much longer prompt 12+30-7=?", "x", "Q:9*9", "Tom has 3 apples and buys 4 more.", "Q:2", "hello world", "Q:100-1"]


def test_invalid_model_args_fail_before_loading(tmp_path):
    with pytest.raises(ValueError, match="vote='majority'"):
        LLaDATemporalLM(pretrained=str(tmp_path / "does-not-exist"), vote="majority")
    with pytest.raises(ValueError, match="unknown model argument"):
        LLaDATemporalLM(pretrained=str(tmp_path / "does-not-exist"), step=3)


def test_batch_size_never_changes_outputs(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=1, **GEN)
    reqs = [req(p, marked_doc(), doc_id=i) for i, p in enumerate(PROMPTS)]
    one = lm.generate_until(reqs, disable_tqdm=True)
    lm8 = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=8, **GEN)
    assert lm8.generate_until(reqs, disable_tqdm=True) == one
    assert len(one) == len(PROMPTS)


def test_sampling_is_seeded_and_batch_invariant(tiny_dir):
    kw = dict(pretrained=str(tiny_dir), temperature=1.0, **GEN)
    reqs = [req(p, doc_id=i) for i, p in enumerate(PROMPTS)]
    a = LLaDATemporalLM(batch_size=8, seed=1, **kw).generate_until(reqs, disable_tqdm=True)
    b = LLaDATemporalLM(batch_size=3, seed=1, **kw).generate_until(reqs, disable_tqdm=True)
    c = LLaDATemporalLM(batch_size=8, seed=2, **kw).generate_until(reqs, disable_tqdm=True)
    assert a == b
    assert a != c


def test_trace_only_for_our_documents(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), **GEN)
    ours, builtin = lm.generate_until([req("Q:1+2=?", marked_doc()), req("Q:1+2=?", {"question": "q"}, task="gsm8k")], disable_tqdm=True)
    text, record = trace.split(ours)
    assert record is not None and record.steps == GEN["steps"]
    assert len(record.answers) == GEN["steps"]
    assert trace.MARKER not in builtin
    assert text == builtin  # same prompt, same settings: the trace is the only difference


def test_trajectory_file_records_every_request(tiny_dir, tmp_path):
    path = tmp_path / "sub" / "traj.jsonl"
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), trajectory_path=str(path), trajectory_text=True, **GEN)
    lm.generate_until([req(p, marked_doc("7"), doc_id=i, task="arith_chain") for i, p in enumerate(PROMPTS[:3])], disable_tqdm=True)
    rows = [TemporalRecord.from_json(json.loads(line)) for line in path.read_text().splitlines()]
    assert sorted(r.doc_id for r in rows) == [0, 1, 2]
    for r in rows:
        assert r.task == "arith_chain" and r.answer_task == "gsm8k" and r.gold == "7"
        assert len(r.answers) == len(r.weights) == len(r.step_texts) == GEN["steps"]
        assert r.step_texts[-1] == r.final_text


def test_vote_returns_latest_step_of_winning_cluster_and_gsm8k_filters_read_it(tiny_dir, monkeypatch):
    """Fake a trajectory whose answer is 5 for most steps and 7 at the end: exp voting keeps 5,
    and lm-eval's own gsm8k strict-match filter extracts 5 from the backend's response."""
    import lm_eval.filters  # noqa: F401  (registers the built-in filters)
    from lm_eval.api.registry import get_filter

    lm = LLaDATemporalLM(pretrained=str(tiny_dir), vote="fixed", gen_length=16, steps=8, block_length=8)
    tok = lm.tokenizer
    texts = ["ab #### 5", "ab #### 5", "ab #### 5", "a #### 5.0", "a #### 5.0", "#### 7", "#### 7", "#### 7"]
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    eos = lm.loaded.eos_id
    traj = torch.tensor([r + [eos] * (16 - len(r)) for r in rows], dtype=torch.int32)[None]
    script_trajectory(monkeypatch, traj)
    response = lm.generate_until([req("Q", {"question": "q"}, task="gsm8k")], disable_tqdm=True)[0]
    assert response == "a #### 5.0"  # latest step of the winning cluster {5, 5.0}
    strict = get_filter("regex")(regex_pattern=r"#### (\-?[0-9\.\,]+)", group_select=0)
    take_first = get_filter("take_first")()
    (filtered,) = take_first.apply(strict.apply([[response]], [{}]), [{}])
    assert filtered == "5.0"
    lm_final = LLaDATemporalLM(pretrained=str(tiny_dir), vote="none", gen_length=16, steps=8, block_length=8)
    assert lm_final.generate_until([req("Q", {"question": "q"}, task="gsm8k")], disable_tqdm=True)[0] == "#### 7"


def test_stop_sequences_cut_final_and_step_texts(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), vote="none", trajectory_path=None, **GEN)
    plain = lm.generate_until([req("Q:1+2=?", gen_kwargs={"until": [], "max_gen_toks": 16})], disable_tqdm=True)[0]
    if len(plain) < 2:
        pytest.skip("random tiny model produced too short a text to cut")
    stop = plain[1]
    cut = lm.generate_until([req("Q:1+2=?", gen_kwargs={"until": [stop], "max_gen_toks": 16})], disable_tqdm=True)[0]
    assert cut == plain[: plain.index(stop)]


def test_loglikelihood_is_deterministic_and_rolling_is_refused(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), mc_num=8, mc_batch_size=4)
    reqs = [Instance("loglikelihood", {}, ("Q:1+2=", "3"), 0), Instance("loglikelihood", {}, ("Q:1+2=", " 44"), 1)]
    a = lm.loglikelihood(reqs, disable_tqdm=True)
    b = lm.loglikelihood(list(reversed(reqs)), disable_tqdm=True)
    assert a == list(reversed(b))
    assert all(ll < 0 and isinstance(g, bool) for ll, g in a)
    with pytest.raises(NotImplementedError, match="loglikelihood_rolling"):
        lm.loglikelihood_rolling(reqs)


def test_generation_settings_mapping(tiny_dir):
    lm = LLaDATemporalLM(pretrained=str(tiny_dir))
    s = lm.resolve_generation({"max_gen_toks": 100})
    assert (s.gen_length, s.block_length, s.steps, s.temperature) == (128, 32, 64, 0.0)
    s = lm.resolve_generation({"max_gen_toks": 20, "do_sample": True, "temperature": 0.7})
    assert (s.gen_length, s.block_length, s.steps, s.temperature) == (20, 20, 10, 0.7)
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), block_length=16, steps=6)
    s = lm.resolve_generation({"max_gen_toks": 64})
    assert (s.gen_length, s.block_length, s.steps) == (64, 16, 8)  # steps rounded up to 4 blocks


@pytest.mark.parametrize("name", ["embedded", "embedded:testbed"])
def test_shipped_models_by_name_decode_with_their_settings(name):
    from lm_eval_temporal.tiny import DEFAULT_GEN, SHIPPED

    lm = LLaDATemporalLM(pretrained=name)
    assert lm.loaded.name == str(SHIPPED[name])
    s = lm.resolve_generation({"max_gen_toks": 256})
    assert (s.gen_length, s.steps, s.block_length) == (DEFAULT_GEN["gen_length"], DEFAULT_GEN["steps"],
                                                       DEFAULT_GEN["block_length"])


def test_paper_protocol_reads_the_whole_canvas(tiny_dir, monkeypatch):
    """protocol=paper decodes past an early EOS (the official reading) and parses officially;
    the default cuts at the EOS and reads the answer before it."""
    from lm_eval_temporal.tasks import process_results

    responses = {}
    for protocol in ("default", "paper"):
        lm = LLaDATemporalLM(pretrained=str(tiny_dir), vote="exp", protocol=protocol, gen_length=32, steps=4,
                             block_length=32)
        tok, eos = lm.tokenizer, lm.loaded.eos_id
        head, tail = tok("so 3 #### 3", add_special_tokens=False)["input_ids"], tok("\\boxed{18}", add_special_tokens=False)["input_ids"]
        row = head + [eos] + tail
        row = row + [eos] * (32 - len(row))
        script_trajectory(monkeypatch, torch.tensor([row] * 4, dtype=torch.int32)[None])
        responses[protocol] = lm.generate_until([req("Q", marked_doc("18"))], disable_tqdm=True)[0]
    (text_d, rec_d), (text_p, rec_p) = trace.split(responses["default"]), trace.split(responses["paper"])
    assert (rec_d.final, rec_d.protocol) == ("3", "default") and "18" not in text_d
    assert (rec_p.final, rec_p.protocol) == ("18.0", "paper") and text_p.endswith("\\boxed{18}")
    doc = {**marked_doc("18")}
    assert process_results(doc, [responses["default"]])["exact_match"] == 0.0
    # tpf counts the tokens before the first EOS under either protocol (the leaderboard's rule)
    assert process_results(doc, [responses["paper"]]) == {"exact_match": 1.0, "final_pass": 1.0, "ever_pass": 1.0,
                                                          "tse": 0.0, "steps_saved": 0.0, "nfe": 4.0,
                                                          "tpf": (len(head), 4)}


def test_parallel_decoding_records_the_steps_it_ran_and_the_schedule_it_saved_on(tiny_dir, tmp_path):
    """parallel_threshold (off by default) through the backend: each row chooses its number of
    steps, which is its horizon T (vote weights over its own steps); ``schedule_steps`` is the
    exact schedule's step count, so steps_saved counts the forward passes parallel decoding saved."""
    from lm_eval_temporal.tasks import process_results
    from lm_eval_temporal.temporal import step_weights

    path = tmp_path / "t.jsonl"
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), parallel_threshold=1e-9, trajectory_path=str(path), **GEN)
    out = lm.generate_until([req(p, marked_doc(), doc_id=i) for i, p in enumerate(PROMPTS[:3])], disable_tqdm=True)
    for text in out:
        record = trace.split(text)[1]
        # gen_length 16 in blocks of 8: one step per block, against the exact schedule's 8
        assert (record.steps, record.steps_run, record.schedule_steps) == (2, 2, 8)
        assert process_results(marked_doc(), [text])["steps_saved"] == 1 - 2 / 8
    rows = [TemporalRecord.from_json(json.loads(x)) for x in path.read_text().splitlines()]
    assert all((r.steps, r.steps_run, r.schedule_steps) == (2, 2, 8) for r in rows)
    assert all(r.weights == step_weights(2, "exp", 5.0) for r in rows)  # the vote's T: the row's own steps
    with pytest.raises(ValueError, match="parallel_threshold: needs remasking=low_confidence"):
        LLaDATemporalLM(pretrained=str(tiny_dir), parallel_threshold=0.9, remasking="random")
    with pytest.raises(ValueError, match=r"parallel_threshold='2': expected a number"):
        LLaDATemporalLM(pretrained=str(tiny_dir), parallel_threshold="2")


def test_parallel_decoding_takes_vote_and_tse_over_each_rows_own_steps(tiny_dir, tmp_path, monkeypatch):
    """A row that chose its own number of steps (4 here, scripted: 5, 7, 7, 5) has those steps
    as its horizon: TSE over its own later half (7, 5), not over gen_length=16 steps, where the
    second half would hold only its final answer and TSE would be 0 for every row that ends
    in the first half."""
    import lm_eval_temporal.families.llada as llada
    from lm_eval_temporal import answers
    from lm_eval_temporal.temporal import step_weights, temporal_semantic_entropy

    path = tmp_path / "t.jsonl"
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), parallel_threshold=1e-9, trajectory_path=str(path), **GEN)
    eos = lm.loaded.eos_id
    rows = [lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in ["#### 5", "#### 7", "#### 7", "#### 5"]]
    traj = torch.tensor([r + [eos] * (16 - len(r)) for r in rows], dtype=torch.int32)[None]
    real = llada.generate

    def four_steps(model, input_ids, attention_mask=None, **kw):
        out = real(model, input_ids, attention_mask, **kw)
        out.sequences[:, -16:] = traj[:, -1].long()
        out.trajectory, out.steps_run = traj.clone(), torch.tensor([4])
        return out

    monkeypatch.setattr(llada, "generate", four_steps)
    record = trace.split(lm.generate_until([req("Q", marked_doc())], disable_tqdm=True)[0])[1]
    assert (record.steps, record.steps_run, record.schedule_steps) == (4, 4, 8) and record.steps_saved == 0.5
    assert record.answers == ["5", "7", "7", "5"]
    own = temporal_semantic_entropy(record.answers, weighting="exp", alpha=12.8, skip_ratio=0.5,
                                    equivalent=answers.equivalence("gsm8k", "equivalence"))
    assert record.tse == own > 0.2  # 0 on a horizon of 16
    (line,) = path.read_text().splitlines()
    assert TemporalRecord.from_json(json.loads(line)).weights == step_weights(4, "exp", 5.0)  # the vote's T


def test_parallel_decoding_saves_on_the_schedule_or_costs(tiny_dir):
    """At this threshold the rows take 8 to 16 steps against the exact schedule's 8:
    steps_saved is negative where a row took more forward passes than the schedule."""
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), parallel_threshold=0.6, **GEN)
    texts = lm.generate_until([req(p, marked_doc(), doc_id=i) for i, p in enumerate(PROMPTS)], disable_tqdm=True)
    records = [trace.split(t)[1] for t in texts]
    assert all(r.steps == r.steps_run and r.schedule_steps == 8 for r in records)
    assert max(r.steps_run for r in records) > 8
    assert min(r.steps_saved for r in records) == 1 - max(r.steps_run for r in records) / 8 < 0


def test_early_stop_with_parallel_decoding_is_refused(tiny_dir):
    """Early stop's thresholds are fractions of T, which a row that chooses its own number of
    steps knows only when it ends: refused as model arguments and in the python API."""
    from lm_eval_temporal.config import SamplerConfig, TemporalConfig
    from lm_eval_temporal.loading import load_model
    from lm_eval_temporal.pipeline import TemporalPipeline

    msg = ("early_stop='stable': early_stop needs a fixed schedule: "
           "parallel_threshold lets each row choose its number of steps")
    with pytest.raises(ValueError, match=f"^model arguments: {msg}"):
        LLaDATemporalLM(pretrained=str(tiny_dir), parallel_threshold=0.6, early_stop="stable", **GEN)
    pipe = TemporalPipeline(load_model(str(tiny_dir)), TemporalConfig(early_stop="stable"))
    with pytest.raises(ValueError, match=f"^{msg}"):
        pipe(["Q:1+2=?"], SamplerConfig(parallel_threshold=0.6, **GEN), "gsm8k")
    confidence = TemporalPipeline(pipe.model, TemporalConfig(early_stop="confidence"))
    with pytest.raises(ValueError, match="early_stop='confidence': early_stop needs a fixed schedule"):
        confidence(["Q:1+2=?"], SamplerConfig(parallel_threshold=0.6, **GEN), "gsm8k")


def test_prefix_cache_option_through_the_backend(tmp_path):
    """Four steps per block: the cache is made at each block's first step and reused for the
    other three (counted on the model's forward). The model has one layer, so the cached
    keys/values depend on the prefix tokens alone and the cache must give the exact outputs."""
    from tiny_models import build_tiny_llada

    one_layer = dict(pretrained=str(build_tiny_llada(tmp_path / "one_layer", n_layers=1)), **GEN)
    exact = LLaDATemporalLM(**one_layer)
    cached = LLaDATemporalLM(**one_layer, prefix_cache="true")
    calls = []
    cached.loaded.model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs.get("prefix_cache") is not None), with_kwargs=True)
    reqs = [req(p, marked_doc(), doc_id=i) for i, p in enumerate(PROMPTS[:3])]
    assert cached.generate_until(reqs, disable_tqdm=True) == exact.generate_until(reqs, disable_tqdm=True)
    per_batch = ([False] + [True] * 3) * 2  # gen_length 16 in two blocks of 8, four steps each
    assert calls and calls == per_batch * (len(calls) // len(per_batch))
    assert cached.get_model_info()["llada_temporal"]["settings"]["prefix_cache"] is True
    with pytest.raises(ValueError, match="prefix_cache: not available with cfg_scale"):
        LLaDATemporalLM(pretrained=one_layer["pretrained"], prefix_cache=True, cfg_scale=1)


def test_progress_bar_is_closed_when_a_batch_raises(tiny_dir, monkeypatch):
    import tqdm

    import lm_eval_temporal.backend as backend

    bars = []  # held here, so no bar is closed by garbage collection

    class RecordingBar(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.closed = False
            bars.append(self)

        def close(self):
            self.closed = True
            super().close()

    monkeypatch.setattr(backend, "tqdm", RecordingBar)
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), **GEN)

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(lm.pipeline, "sample", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        lm.generate_until([req(p) for p in PROMPTS[:2]])
    assert [bar.closed for bar in bars] == [True]
