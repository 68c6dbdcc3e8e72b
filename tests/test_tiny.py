"""The embedded tiny model, its tokenizer, the arith_chain generator and the training script."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from lm_eval_temporal.tiny import DEFAULT_GEN, EMBEDDED_DIR, SHIPPED, TESTBED_DIR, arith, shipped_dir

# --------------------------------------------------------------------------- generator


def test_make_problem_is_deterministic_and_correct():
    a = [arith.make_problem(random.Random(7), lvl) for lvl in arith.LEVELS]
    b = [arith.make_problem(random.Random(7), lvl) for lvl in arith.LEVELS]
    assert a == b
    rng = random.Random(0)
    for _ in range(500):
        lvl = rng.choice(arith.LEVELS)
        p = arith.make_problem(rng, lvl)
        assert p["level"] == lvl
        assert p["question"].count("+") + p["question"].count("-") == lvl
        assert int(p["answer"]) == eval(p["question"])  # plain +/- chain of integers
        assert p["target"].endswith(f"#### {p['answer']}")
        assert p["target"].count("=") == lvl
        assert arith.solve(p["question"]) == (p["target"], int(p["answer"]))
        # every number in the worked solution lies in 0..MAX_VALUE; later operands are small
        nums = [int(x) for x in re.findall(r"\d+", p["target"])]
        assert all(0 <= x <= arith.MAX_VALUE for x in nums)
        assert all(int(x) <= arith.MAX_STEP_OPERAND for x in re.split(r"[+-]", p["question"])[1:])
        assert len(p["target"]) <= 32


def test_worked_solution_format():
    assert arith.solve("12+35-7") == ("12+35=47;47-7=40;#### 40", 40)
    assert arith.prompt_text("12+35-7") == "Q:12+35-7=?\nA:"
    with pytest.raises(ValueError):
        arith.solve("12*3")
    with pytest.raises(ValueError):
        arith.make_problem(random.Random(0), 9)


def test_eval_docs_deterministic_distinct_and_in_eval_bucket():
    docs = arith.eval_docs(n=300, seed=1234)
    assert docs == arith.eval_docs(n=300, seed=1234)
    assert docs != arith.eval_docs(n=300, seed=1)
    assert len(docs) == 300
    assert len({d["question"] for d in docs}) == 300
    assert all(arith.is_eval_question(d["question"]) for d in docs)
    assert {"question", "answer", "target", "level"} <= set(docs[0])
    # level mix follows EVAL_WEIGHTS exactly (up to rounding)
    for lvl, w in arith.EVAL_WEIGHTS.items():
        assert abs(sum(d["level"] == lvl for d in docs) - 300 * w) <= 1
    # a prefix of a longer run is not required, but a fixed (n, seed) must be stable
    assert arith.eval_docs(n=5, seed=1234) == arith.eval_docs(n=5, seed=1234)


def test_training_stream_never_yields_eval_problems():
    eval_q = {d["question"] for seed in (1234, 0, 1) for d in arith.eval_docs(n=300, seed=seed)}
    for seed in (0, 1):
        for p in itertools.islice(arith.training_stream(seed=seed), 20000):
            assert not arith.is_eval_question(p["question"])
            assert p["question"] not in eval_q
    # the hash rule reserves roughly 1/EVAL_BUCKETS of all problems for evaluation
    rng = random.Random(3)
    qs = [arith.make_problem(rng, rng.choice(arith.LEVELS))["question"] for _ in range(20000)]
    share = sum(map(arith.is_eval_question, qs)) / len(qs)
    assert abs(share - 1 / arith.EVAL_BUCKETS) < 0.01
    assert arith.split_of(qs[0]) in {"eval", "train"}


def test_training_stream_is_seeded():
    a = list(itertools.islice(arith.training_stream(seed=5), 50))
    assert a == list(itertools.islice(arith.training_stream(seed=5), 50))
    assert a != list(itertools.islice(arith.training_stream(seed=6), 50))


# --------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from lm_eval_temporal.tiny.tokenizer import save_tokenizer

    d = tmp_path_factory.mktemp("tok")
    save_tokenizer(d)
    return d


TEXTS = [
    "Q:12+35-7=?\nA:",
    "Janet’s ducks lay 16 eggs per day. She eats three… \\boxed{18}",
    "héllo wörld — naïve café, 中文, 日本語, emoji 😀🎉, tabs\tand\nnewlines",
    "<reasoning>\n x = \\frac{1}{2} </reasoning>",
    "",
    "\u00a0\u200b\U0010ffff",
]


def test_tokenizer_round_trips_any_text(tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    rng = random.Random(0)
    texts = list(TEXTS)
    texts += ["".join(chr(rng.randint(32, 126)) for _ in range(80)) for _ in range(20)]
    texts += ["".join(chr(rng.randint(0xA0, 0x2FFF)) for _ in range(40)) for _ in range(20)]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_token_id is None or tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    # printable ASCII is one token per character
    assert len(tok.encode("Q:12+35-7=?\nA:", add_special_tokens=False)) == len("Q:12+35-7=?\nA:")


def test_tokenizer_special_tokens_and_chat_template(tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    ids = {tok.mask_token_id, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id}
    assert None not in ids and len(ids) == 4  # pad != mask, all distinct
    assert "<|eot_id|>" in tok.get_vocab()
    msgs = [{"role": "user", "content": "12+3=?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|startoftext|><|user|>\n12+3=?<|eot_id|><|assistant|>\n"
    assert not tok.apply_chat_template(msgs, tokenize=False).endswith("<|assistant|>\n")
    special = tok.encode("1<|mdm_mask|>2<|endoftext|>", add_special_tokens=False)
    assert tok.mask_token_id in special and tok.eos_token_id in special
    assert tok.decode(special, skip_special_tokens=True) == "12"


# --------------------------------------------------------------------------- checkpoint


def test_shipped_names():
    assert shipped_dir("embedded") == EMBEDDED_DIR and shipped_dir("embedded:testbed") == TESTBED_DIR
    assert shipped_dir(str(EMBEDDED_DIR)) is None and shipped_dir(None) is None and shipped_dir("testbed") is None


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_layout_and_size(name):
    files = {p.name: p for p in SHIPPED[name].iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in files)
    assert sum(p.stat().st_size for p in files.values()) <= 10 * 2**20  # the testbed's bound (issue 23)
    cfg = json.loads(files["config.json"].read_text())
    assert cfg["model_type"] == "llada" and cfg["architectures"] == ["LLaDAModelLM"]
    for key in ("d_model", "n_heads", "n_layers", "mlp_hidden_size", "vocab_size", "embedding_size",
                "max_sequence_length", "rope_theta", "mask_token_id", "eos_token_id", "pad_token_id",
                "bos_token_id"):
        assert key in cfg, key
    assert cfg["mask_token_id"] != cfg["pad_token_id"]
    g = DEFAULT_GEN
    assert g["gen_length"] % g["block_length"] == 0
    assert g["steps"] % (g["gen_length"] // g["block_length"]) == 0


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_loads_strictly(name):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    import lm_eval_temporal.llada  # noqa: F401  (registers model_type "llada")

    folder = SHIPPED[name]
    model, info = AutoModel.from_pretrained(str(folder), output_loading_info=True)
    assert type(model).__name__ == "LLaDAModelLM"
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    state = load_file(str(folder / "model.safetensors"))
    assert set(state) == set(model.state_dict())
    assert all(k.startswith("model.transformer.") for k in state)
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.mask_token_id == model.config.mask_token_id
    assert tok.eos_token_id == model.config.eos_token_id
    assert tok.pad_token_id == model.config.pad_token_id
    assert len(tok) <= model.config.vocab_size
    ids = torch.tensor([tok.encode(arith.prompt_text("1+2"), add_special_tokens=False)])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert torch.isfinite(logits).all()


def test_embedded_checkpoint_loads_through_load_model():
    loading = pytest.importorskip("lm_eval_temporal.loading")
    lm = loading.load_model(str(EMBEDDED_DIR), device="cpu")
    assert lm.mask_id == lm.model.config.mask_token_id == lm.tokenizer.mask_token_id
    assert lm.eos_id == lm.tokenizer.eos_token_id
    assert lm.pad_id != lm.mask_id


# --------------------------------------------------------------------------- training


def test_tiny_training_run_saves_loadable_checkpoint(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lm_eval_temporal.tiny.train import main

    out = tmp_path / "run"
    main(["--out", str(out), "--steps", "4", "--batch_size", "4", "--d_model", "32", "--n_layers", "1",
          "--n_heads", "2", "--mlp_hidden_size", "64", "--log_every", "2", "--no_progress", "--seed", "3"])
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    assert all(r["loss"] > 0 for r in log)
    model, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.config.mask_token_id == tok.mask_token_id
    assert model.config.d_model == 32
    # same seed -> same weights
    out2 = tmp_path / "run2"
    main(["--out", str(out2), "--steps", "4", "--batch_size", "4", "--d_model", "32", "--n_layers", "1",
          "--n_heads", "2", "--mlp_hidden_size", "64", "--log_every", "2", "--no_progress", "--seed", "3"])
    m2 = AutoModel.from_pretrained(str(out2))
    for (k, a), (_, b) in zip(model.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_training_stop_at_and_save_every_give_the_full_runs_checkpoints(tmp_path):
    """A run stopped at step 4 of a 6-step schedule, saving every 2 steps, holds the very
    models the full run holds at steps 2 and 4 (the testbed is made this way)."""
    from safetensors.torch import load_file

    from lm_eval_temporal.tiny.train import main

    small = ["--batch_size", "4", "--d_model", "32", "--n_layers", "1", "--n_heads", "2", "--mlp_hidden_size", "64",
             "--log_every", "1", "--no_progress", "--seed", "3", "--steps", "6", "--save_every", "2"]
    main(["--out", str(tmp_path / "full"), *small])
    main(["--out", str(tmp_path / "stopped"), *small, "--stop_at", "4"])
    assert sorted(p.name for p in (tmp_path / "stopped").glob("step_*")) == ["step_2", "step_4"]

    def weights(d):
        return load_file(str(d / "model.safetensors"))

    for step in ("step_2", "step_4"):
        a, b = weights(tmp_path / "full" / step), weights(tmp_path / "stopped" / step)
        assert all(a[k].equal(b[k]) for k in a)
    end, last = weights(tmp_path / "stopped"), weights(tmp_path / "stopped" / "step_4")
    assert all(end[k].equal(last[k]) for k in end)
    logs = [[json.loads(x)["lr"] for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
            for d in ("full", "stopped")]
    assert logs[1] == logs[0][:4]  # the stopped run follows the 6-step schedule
    with pytest.raises(ValueError, match="stop_at must be between 1 and steps=6"):
        main(["--out", str(tmp_path / "bad"), *small, "--stop_at", "7"])
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_training_batch_layout():
    from lm_eval_temporal.tiny.tokenizer import build_tokenizer
    from lm_eval_temporal.tiny.train import encode_batch

    tok = build_tokenizer()
    probs = [arith.make_problem(random.Random(i), 1 + i % 3) for i in range(3)]
    ids, attn, resp = encode_batch(probs, tok, 40)
    assert ids.shape[1] == resp.shape[1] and int(resp[0].sum()) == 40
    # prompts are left-padded with pad (hidden), responses end with EOS padding
    assert (ids[attn == 0] == tok.pad_token_id).all()
    assert (ids[:, -1] == tok.eos_token_id).all()
    text = tok.decode(ids[0][resp[0]].tolist(), skip_special_tokens=True)
    assert text == probs[0]["target"]


def test_masked_diffusion_loss_masks_only_the_response():
    import torch

    from lm_eval_temporal.tiny.tokenizer import build_tokenizer
    from lm_eval_temporal.tiny.train import encode_batch, masked_diffusion_loss

    tok = build_tokenizer()
    probs = [arith.make_problem(random.Random(i), 1 + i % 3) for i in range(8)]
    ids, attn, resp = encode_batch(probs, tok, 40)
    seen = {}

    class Uniform(torch.nn.Module):
        def forward(self, x, attention_mask=None):
            seen["x"] = x
            return type("O", (), {"logits": torch.zeros(*x.shape, len(tok), requires_grad=True)})()

    loss = masked_diffusion_loss(Uniform(), ids, attn, resp, tok.mask_token_id,
                                 generator=torch.Generator().manual_seed(0))
    x = seen["x"]
    assert torch.equal(x[~resp], ids[~resp])  # prompt and padding never masked
    assert (x[resp] == tok.mask_token_id).any()
    # uniform logits: CE = log V on each masked token, weighted 1/p, normalised by length 40
    assert torch.isfinite(loss) and loss.item() > 0


def test_stratified_mask_ratios_cover_every_stratum_once():
    import torch

    from lm_eval_temporal.tiny.tokenizer import build_tokenizer
    from lm_eval_temporal.tiny.train import encode_batch, masked_diffusion_loss

    tok = build_tokenizer()
    B, G = 16, 400  # long responses, so each row's masked share estimates its ratio well
    probs = [arith.make_problem(random.Random(i), 1) for i in range(B)]
    ids, attn, resp = encode_batch(probs, tok, G)
    seen = {}

    class Uniform(torch.nn.Module):
        def forward(self, x, attention_mask=None):
            seen["x"] = x
            return type("O", (), {"logits": torch.zeros(*x.shape, len(tok), requires_grad=True)})()

    masked_diffusion_loss(Uniform(), ids, attn, resp, tok.mask_token_id,
                          generator=torch.Generator().manual_seed(3), t_sampling="stratified")
    share = (seen["x"][resp].view(B, G) == tok.mask_token_id).float().mean(dim=1)
    strata = sorted(int(s * B) for s in share.clamp(max=1 - 1e-6))
    # one ratio per stratum [i/B, (i+1)/B), up to the binomial noise of 400 draws (sd <= 0.025)
    assert sum(abs(a - b) for a, b in zip(strata, range(B))) <= 6
    with pytest.raises(ValueError, match="t_sampling must be 'uniform' or 'stratified', got 'sobol'"):
        masked_diffusion_loss(Uniform(), ids, attn, resp, tok.mask_token_id, t_sampling="sobol")


def test_shipped_testbed_is_what_its_build_command_makes(tmp_path):
    """``python -m lm_eval_temporal.tiny.testbed`` rebuilds the shipped testbed byte for byte:
    the embedded model with only its output head scaled."""
    from safetensors.torch import load_file

    from lm_eval_temporal.tiny.testbed import HEAD, main

    main(["--out", str(tmp_path / "tb")])
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "testbed.json"):
        assert (tmp_path / "tb" / name).read_bytes() == (TESTBED_DIR / name).read_bytes(), name
    tb, emb = load_file(str(TESTBED_DIR / "model.safetensors")), load_file(str(EMBEDDED_DIR / "model.safetensors"))
    assert set(tb) == set(emb) and all(tb[k].equal(emb[k]) for k in emb if k != HEAD)
    assert tb[HEAD].equal(emb[HEAD] * 0.25)
    assert json.loads((TESTBED_DIR / "testbed.json").read_text()) == {"built_from": "embedded", "head_scale": 0.25}
    with pytest.raises(ValueError, match="head_scale must be > 0"):
        main(["--out", str(tmp_path / "bad"), "--head_scale", "0"])
