"""Early stop (early_stop=stable|confidence), the finishing worker (overlap) and the gated vote,
through the backend on a scripted model whose every step is known in advance."""

from __future__ import annotations

import json

import pytest
import torch
from lm_eval.api.instance import Instance

from lm_eval_temporal import trace
from lm_eval_temporal.backend import LLaDATemporalLM
from lm_eval_temporal.record import TemporalRecord

G, STEPS = 16, 8  # one block, 2 tokens committed per step
GEN = dict(gen_length=G, steps=STEPS, block_length=G)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import build_tiny_llada

    return build_tiny_llada(tmp_path_factory.mktemp("tiny_llada_es"))


class ScriptedModel(torch.nn.Module):
    """Predicts, for every generation position, the token of a scripted text, with a chosen
    top-1/top-2 logit gap. The script is picked by the row's last prompt character and indexed
    by the row's step (read off how many generation positions are still masked)."""

    def __init__(self, inner, tokenizer, scripts: dict[str, list[str]], gaps: dict[str, float]):
        super().__init__()
        self.config, self.tok = inner.config, tokenizer
        self.vocab = inner.config.vocab_size
        self.scripts, self.gaps = scripts, gaps
        self.calls = 0

    def _ids(self, text: str) -> list[int]:
        # Right-aligned: the answer digit sits in the last position, which is committed at the
        # last step, so until then every step's prediction of it shows (committed tokens freeze).
        ids = self.tok(text.rjust(G, "x"), add_special_tokens=False)["input_ids"]
        assert len(ids) == G
        return ids

    def forward(self, input_ids, attention_mask=None):
        self.calls += 1
        B, L = input_ids.shape
        logits = torch.full((B, L, self.vocab), -100.0)
        for b in range(B):
            key = self.tok.decode([int(input_ids[b, L - G - 1])])
            step = (G - int((input_ids[b, L - G:] == self.config.mask_token_id).sum())) // 2
            script = self.scripts[key]
            ids = self._ids(script[min(step, len(script) - 1)])
            for j, t in enumerate(ids):
                logits[b, L - G + j, t] = self.gaps[key]
                logits[b, L - G + j, 5] = 0.0  # the runner-up: gap = gaps[key]
            logits[b, : L - G, 5] = 1.0
        return type("Out", (), {"logits": logits})()


# Prompts end with the script key.
SCRIPTS = {
    "A": ["#### 5"] * STEPS,  # settled from the first step
    "B": ["#### 5", "#### 7"] * (STEPS // 2),  # never settles
    "C": ["#### 1", "#### 2", "#### 3", "#### 9", "#### 9", "#### 9", "#### 9", "#### 9"],
}
GAPS = {"A": 10.0, "B": 4.0, "C": 2.0}


def req(key: str, doc_id: int, marked: bool = True) -> Instance:
    doc = {"gold": json.dumps("5"), trace.TRACE_KEY: {"task": "gsm8k"}} if marked else {"question": "q"}
    return Instance("generate_until", doc, (f"Q:{key}", {"until": [], "max_gen_toks": G}), doc_id, ("arith_chain", doc_id, 1))


def make_lm(tiny_dir, tmp_path=None, **kw) -> tuple[LLaDATemporalLM, ScriptedModel]:
    if tmp_path is not None:
        kw["trajectory_path"] = str(tmp_path / f"traj_{len(list(tmp_path.iterdir()))}.jsonl")
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), batch_size=4, **GEN, **kw)
    scripted = ScriptedModel(lm.loaded.model, lm.tokenizer, SCRIPTS, GAPS)
    lm.loaded.model = scripted
    return lm, scripted


def records(lm) -> dict[str, TemporalRecord]:
    rows = [TemporalRecord.from_json(json.loads(x)) for x in lm.trajectory_file_path.read_text().splitlines()]
    return {"ABC"[r.doc_id]: r for r in rows}


REQS = [req("A", 0), req("B", 1), req("C", 2)]


def test_off_by_default_and_never_installs_a_callback(tiny_dir, monkeypatch):
    import lm_eval_temporal.families.llada as llada

    lm, _ = make_lm(tiny_dir)
    assert lm.opts.early_stop == "none"
    seen = []
    real = llada.generate

    def spy(*a, **kw):
        seen.append(sorted(k for k, v in kw.items() if "callback" in k and v))
        return real(*a, **kw)

    monkeypatch.setattr(llada, "generate", spy)
    out = lm.generate_until(REQS, disable_tqdm=True)
    assert seen == [[]]  # the sampler runs exactly as before: no callback, no gap
    for text in out:
        assert trace.split(text)[1].steps_run == STEPS


def test_off_is_bit_identical_to_a_stop_rule_that_never_fires(tiny_dir, tmp_path):
    off, _ = make_lm(tiny_dir, tmp_path)
    never, _ = make_lm(tiny_dir, tmp_path, early_stop="stable", stop_window=STEPS + 1)
    a, b = off.generate_until(REQS, disable_tqdm=True), never.generate_until(REQS, disable_tqdm=True)
    for x, y in zip(a, b):
        (tx, sx), (ty, sy) = trace.split(x), trace.split(y)
        assert sy.steps_run == STEPS
        assert (tx, sx) == (ty, sy)
    ra, rb = records(off), records(never)
    assert ra == rb  # every field, steps_run (= STEPS) included


def test_stable_stops_settled_rows_only(tiny_dir, tmp_path):
    lm, scripted = make_lm(tiny_dir, tmp_path, early_stop="stable", stop_window=3, stop_share=0.9)
    out = lm.generate_until(REQS, disable_tqdm=True)
    rec = records(lm)
    # A: "5" wins from step 0 with share 1.0; held for 3 steps at step 2 -> 3 forward passes.
    assert rec["A"].steps_run == 3 and rec["A"].answers == ["5"] * 3
    assert len(rec["A"].weights) == 3 and rec["A"].steps == STEPS
    assert trace.split(out[0])[0] == "#### 5".rjust(G, "x") and trace.split(out[0])[1].steps_run == 3
    # B alternates 5/7: the winner's share never reaches 0.9, so it runs every step.
    assert rec["B"].steps_run == STEPS
    # C settles on 9 from step 3; exp weights (alpha 5, T 8) give 9 the majority at step 3
    # (w3 = e^1.875 > w0+w1+w2); the share reaches 0.9 at step 6 (9 held since step 3).
    assert rec["C"].steps_run == 7 and rec["C"].final == "9"
    assert scripted.calls == STEPS  # the batch ran until its last row finished


def test_stable_rows_match_their_unstopped_runs_up_to_the_stop(tiny_dir, tmp_path):
    full, _ = make_lm(tiny_dir, tmp_path)
    stop, _ = make_lm(tiny_dir, tmp_path, early_stop="stable", stop_window=3)
    full.generate_until(REQS, disable_tqdm=True)
    stop.generate_until(REQS, disable_tqdm=True)
    rf, rs = records(full), records(stop)
    for k in "ABC":
        n = rs[k].steps_run
        assert rs[k].answers == rf[k].answers[:n]
    assert rs["B"] == rf["B"]  # a row that never stops is untouched by the others stopping


def test_confidence_stops_on_the_staged_gap(tiny_dir, tmp_path):
    lm, _ = make_lm(tiny_dir, tmp_path, early_stop="confidence", stop_gap="8:5:3")
    lm.generate_until(REQS, disable_tqdm=True)
    rec = records(lm)
    # Stages over 8 steps: steps 0-2 need 8, 3-5 need 5, 6-7 need 3.
    assert rec["A"].steps_run == 1  # gap 10 >= 8 at step 0
    assert rec["B"].steps_run == 7  # gap 4 first clears a threshold (3) at step 6
    assert rec["C"].steps_run == STEPS  # gap 2 never does
    lm1, _ = make_lm(tiny_dir, tmp_path, early_stop="confidence", stop_gap=4)
    lm1.generate_until(REQS, disable_tqdm=True)
    assert {k: r.steps_run for k, r in records(lm1).items()} == {"A": 1, "B": 1, "C": STEPS}


def test_stable_policy_breaks_ties_by_the_protocol():
    """The running vote that decides a stop has the vote's tie rule (paper: the answer seen first)."""
    from lm_eval_temporal import early_stop
    from lm_eval_temporal.config import SamplerConfig, TemporalConfig

    class Boxed:  # a StepDecoder stand-in: the row [t] reads "\\boxed{t}"
        def cut(self, rows):
            return None, rows.long()

        def texts(self, rows):
            return [f"\\boxed{{{int(r[0])}}}" for r in rows]

    script = [1, 2, 2, 2]
    ran = {}
    for protocol in ("default", "paper"):
        # alpha 0: equal weights, so "1" and "2" tie after step 1.
        cfg = TemporalConfig(early_stop="stable", stop_window=2, stop_share=0.5, alpha=0.0, protocol=protocol)
        sampler = SamplerConfig(gen_length=len(script), steps=len(script), block_length=len(script))
        pol = early_stop.policy(cfg, sampler, Boxed(), ["gsm8k"], [[]])
        for step, t in enumerate(script):
            if pol.callback(step, torch.tensor([[t]]), torch.ones(1, 1, dtype=torch.bool))[0]:
                break
        ran[protocol] = step + 1
    # latest: "2" takes the tie at step 1 and has held 2 steps at step 2;
    # first: "1" keeps the tie at step 1, held 2 steps with half the weight.
    assert ran == {"default": 3, "paper": 2}


def test_overlap_worker_changes_nothing(tiny_dir, tmp_path):
    reqs = [req("ABC"[i % 3], i) for i in range(9)] + [req("A", 9, marked=False)]
    on, _ = make_lm(tiny_dir, tmp_path, overlap=True)
    off, _ = make_lm(tiny_dir, tmp_path, overlap=False)
    assert on.generate_until(reqs, disable_tqdm=True) == off.generate_until(reqs, disable_tqdm=True)
    assert on.trajectory_file_path.read_text() == off.trajectory_file_path.read_text()


def test_gated_vote_in_the_backend(tiny_dir, tmp_path):
    # C: final 9 holds the last 5 steps -> kept by a 4-step gate; B: last 4 steps alternate.
    lm, _ = make_lm(tiny_dir, tmp_path, vote="gated", gate_window=4, gate_share=0.9)
    out = lm.generate_until(REQS, disable_tqdm=True)
    rec = records(lm)
    assert rec["C"].gate_kept_final is True and rec["C"].vote == "9"
    assert rec["B"].gate_kept_final is False
    assert rec["B"].method == "gated" and trace.split(out[1])[1].method == "gated"
    # B's fallback is the exp vote: 7 holds the later (heavier) steps 1, 3, 5, 7.
    assert rec["B"].vote == "7"


def test_step_texts_equal_decoding_every_step(tiny_dir):
    """Decoding only the steps whose tokens before the first stop token changed gives, step by
    step, the text a full decode of that step gives."""
    lm = LLaDATemporalLM(pretrained=str(tiny_dir), **GEN)
    g = torch.Generator().manual_seed(0)
    traj = torch.randint(4, 100, (12, G), generator=g, dtype=torch.int32)
    traj[3:6] = traj[2]  # unchanged steps
    traj[6] = traj[5]
    traj[6, 10:] = 1  # EOS from position 10 ...
    traj[7] = traj[6]
    traj[7, 12] = 50  # ... so a change after it does not change the text
    decoder = lm.pipeline.decoder
    traj[9, 0] = decoder.stop_ids[0]  # empty text
    for stops in ([], ["a"], ["#", "b"]):
        naive = []
        for row in traj.tolist():
            end = next((i for i, t in enumerate(row) if t in set(decoder.stop_ids.tolist())), len(row))
            text = lm.tokenizer.decode(row[:end], skip_special_tokens=True)
            for s in stops:
                if s in text:
                    text = text[: text.index(s)]
            naive.append(text)
        assert decoder.step_texts(traj, stops) == naive
        assert decoder.texts(traj, stops) == naive


def test_stop_min_holds_every_row_until_its_step(tiny_dir, tmp_path):
    # stop_min 0.5 of 8 steps: no stop before step 4 (5 forward passes at least).
    lm, _ = make_lm(tiny_dir, tmp_path, early_stop="stable", stop_window=3, stop_min=0.5)
    lm.generate_until(REQS, disable_tqdm=True)
    assert {k: r.steps_run for k, r in records(lm).items()} == {"A": 5, "B": STEPS, "C": 7}
    lm, _ = make_lm(tiny_dir, tmp_path, early_stop="confidence", stop_gap=4, stop_min=0.5)
    lm.generate_until(REQS, disable_tqdm=True)
    assert {k: r.steps_run for k, r in records(lm).items()} == {"A": 5, "B": 5, "C": STEPS}
