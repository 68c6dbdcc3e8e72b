"""The LLaDA2.x family (LLaDA2.0 / 2.1 mini) on tiny random checkpoints, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lm_eval_temporal.families.llada2 import OFFICIAL, LLaDA2Settings
from lm_eval_temporal.families.llada2.model import LLaDA2Config, LLaDA2MoeModelLM, block_causal_mask
from lm_eval_temporal.families.llada2.sampler import even_schedule, generate
from tiny_models import EOS_ID, MASK_ID, PAD_ID, build_tokenizer

torch.set_num_threads(1)

PROMPTS = [[5, 40, 41, 42, 43, 44, 45], [5, 50, 51], [5, 60, 61, 62, 63]]


def tiny_llada2(seed: int = 0, **overrides) -> LLaDA2MoeModelLM:
    torch.manual_seed(seed)
    fields = dict(vocab_size=len(build_tokenizer()), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, num_experts=8, num_shared_experts=1,
                  num_experts_per_tok=2, n_group=4, topk_group=2, moe_intermediate_size=16, first_k_dense_replace=1,
                  max_position_embeddings=256, pad_token_id=PAD_ID, mask_token_id=MASK_ID, eos_token_id=EOS_ID,
                  use_qkv_bias=False, use_bias=False, architectures=["LLaDA2MoeModelLM"])
    fields.update(overrides)
    model = LLaDA2MoeModelLM(LLaDA2Config(**fields)).to(torch.float64).eval()
    with torch.no_grad():  # a non-zero router bias, so the choice-only bias is exercised
        for layer in model.model.layers[1:]:
            layer.mlp.gate.expert_bias.uniform_(-0.1, 0.1)
    return model


def build_tiny_llada2(out: Path, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tiny_llada2(seed).to(torch.float32).save_pretrained(str(out))
    build_tokenizer().save_pretrained(str(out))
    return out


def reference_keys(c: LLaDA2Config) -> set[str]:
    """The state-dict keys of the hub's modeling_llada2_moe.py for config ``c`` (written out from it)."""
    keys = {"model.word_embeddings.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        keys |= {p + k for k in ("input_layernorm.weight", "post_attention_layernorm.weight",
                                 "attention.query_key_value.weight", "attention.dense.weight",
                                 "attention.query_layernorm.weight", "attention.key_layernorm.weight")}
        mlp = ("gate_proj", "up_proj", "down_proj")
        if i < c.first_k_dense_replace:
            keys |= {f"{p}mlp.{m}.weight" for m in mlp}
        else:
            keys |= {f"{p}mlp.gate.weight", f"{p}mlp.gate.expert_bias"}
            keys |= {f"{p}mlp.experts.{e}.{m}.weight" for e in range(c.num_experts) for m in mlp}
            keys |= {f"{p}mlp.shared_experts.{m}.weight" for m in mlp}
    return keys


def left_pad(rows, pad=PAD_ID):
    P = max(map(len, rows))
    ids = torch.tensor([[pad] * (P - len(r)) + r for r in rows])
    return ids, torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows])


def test_checkpoint_has_the_hub_fields_and_keys_and_loads_back(tmp_path):
    model = tiny_llada2()
    assert set(model.state_dict()) == reference_keys(model.config)
    model.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "llada2_moe" and saved["partial_rotary_factor"] == 0.5
    assert saved["n_group"] == 4 and saved["routed_scaling_factor"] == 2.5
    back = LLaDA2MoeModelLM.from_pretrained(str(tmp_path), dtype=torch.float64).eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name
    ids = torch.tensor([PROMPTS[0] + [MASK_ID] * 9])
    assert torch.equal(model(ids, block_length=4).logits, back(ids, block_length=4).logits)


def test_attention_is_block_causal():
    mask = block_causal_mask(6, 2)[0, 0]
    assert mask.tolist()[2] == [True, True, True, True, False, False]
    model = tiny_llada2()
    ids = torch.tensor([PROMPTS[0] + [MASK_ID] * 9])  # 16 tokens, blocks of 4
    base = model(ids, block_length=4).logits
    changed = ids.clone()
    changed[0, 12:] = 70  # the last block: earlier blocks must not see it
    out = model(changed, block_length=4).logits
    assert torch.equal(out[0, :12], base[0, :12]) and not torch.allclose(out[0, 12:], base[0, 12:])
    # a truncated canvas (what the sampler runs up to the current block) gives the same logits
    assert torch.allclose(model(ids[:, :8], block_length=4).logits, base[:, :8], atol=1e-12)


def test_batched_logits_equal_unbatched():
    model = tiny_llada2()
    ids = torch.tensor([PROMPTS[0] + [MASK_ID] * 9, PROMPTS[2] + [MASK_ID] * 11])
    batched = model(ids, block_length=4).logits
    for b in range(2):
        assert torch.allclose(batched[b], model(ids[b:b + 1], block_length=4).logits[0], atol=1e-12)


def test_cached_logits_equal_logits_without_cache():
    model = tiny_llada2().to(torch.float32)
    ids = torch.tensor([PROMPTS[0] + [43] + [MASK_ID] * 8])  # a prompt of two blocks of 4, then two blocks
    full = model(ids, block_length=4).logits
    prompt = model(ids[:, :8], block_length=4, use_cache=True)
    assert len(prompt.cache) == 2 and prompt.cache[0][0].shape[2] == 8
    first = model(ids[:, 8:12], block_length=4, cache=prompt.cache, use_cache=True)
    second = model(ids[:, 12:], block_length=4, cache=first.cache)
    torch.testing.assert_close(first.logits, full[:, 8:12], atol=1e-5, rtol=0)
    torch.testing.assert_close(second.logits, full[:, 12:], atol=1e-5, rtol=0)
    # both blocks at once, with the mask and positions given as the sampler gives them
    both = model(ids[:, 8:], attention_mask=block_causal_mask(16, 4)[..., 8:, :],
                 position_ids=torch.arange(8, 16)[None], cache=prompt.cache)
    torch.testing.assert_close(both.logits, full[:, 8:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="over 16 keys"):
        model(ids[:, 8:], attention_mask=block_causal_mask(8, 4), cache=prompt.cache)


class EosFrom(torch.nn.Module):
    """Adds ``boost`` to EOS's logit from canvas position ``start`` on, so that a tiny random
    model ends its output after a few blocks (positions as the sampler passes them)."""

    def __init__(self, inner, start: int, boost: float):
        super().__init__()
        self.inner, self.start, self.boost = inner, start, boost

    def forward(self, x, **kw):
        out = self.inner(x, **kw)
        out.logits[..., EOS_ID] += self.boost * (kw["position_ids"] >= self.start)
        return out


CACHE_CASES = {
    "2.0-greedy-eos": dict(threshold=0.9, temperature=0.0, eos_early_stop=True),
    "2.0-sampled-eos": dict(threshold=0.5, temperature=0.8, eos_early_stop=True),
    "2.0-sampled": dict(threshold=0.95, temperature=1.0),
    "2.1-greedy": dict(threshold=0.9, temperature=0.0, editing_threshold=0.0, max_post_steps=3, eos_early_stop=True),
    "2.1-sampled": dict(threshold=0.5, temperature=0.8, editing_threshold=0.3, max_post_steps=2, eos_early_stop=True),
}


@pytest.mark.parametrize("boost", [0.0, 2.0])
@pytest.mark.parametrize("case", sorted(CACHE_CASES))
def test_cached_decoding_equals_full_recompute(case, boost):
    model = EosFrom(tiny_llada2(), 11, boost)
    s = LLaDA2Settings(gen_length=14, steps=4, block_length=4, **CACHE_CASES[case])
    ids, mask = left_pad(PROMPTS)
    gens = lambda: [torch.Generator().manual_seed(11 + i) for i in range(3)]  # noqa: E731
    cached, full = (generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=EOS_ID, generators=gens(), capture=True,
                             use_cache=use_cache) for use_cache in (True, False))
    assert torch.equal(cached.sequences, full.sequences)
    assert torch.equal(cached.trajectory, full.trajectory)
    assert torch.equal(cached.steps_run, full.steps_run) and torch.equal(cached.forward_passes, full.forward_passes)
    assert int(full.steps_run.min()) >= 4  # every row runs steps against a cache of its earlier blocks


def test_cached_steps_run_only_positions_not_yet_cached():
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, **kw):
            calls.append((x.shape[1], int(kw["position_ids"][0, 0])))
            return self.inner(x, **kw)

    model = Recorder(tiny_llada2())
    # threshold 1: one commit a step; the prompt (7) leaves 1 mask in block 1, then blocks 2 and 3 of 4
    s = LLaDA2Settings(gen_length=9, steps=4, block_length=4, threshold=1.0)
    ids, mask = left_pad([PROMPTS[0]])
    for use_cache in (True, False):
        calls.clear()
        out = generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=None, use_cache=use_cache)
        assert out.steps_run.tolist() == out.forward_passes.tolist() == [9] and len(calls) == 9
        if use_cache:  # the prompt's block with block 1, then a finished block with the next one's first step
            assert calls == [(8, 0)] + [(8, 4)] + [(4, 8)] * 3 + [(8, 8)] + [(4, 12)] * 3
        else:
            assert calls == [(8, 0)] + [(12, 0)] * 4 + [(16, 0)] * 4


def test_even_schedule():
    assert even_schedule(32, 32) == [1] * 32 and even_schedule(10, 4) == [3, 3, 2, 2]


@pytest.mark.parametrize("threshold,temperature", [(0.95, 0.0), (0.0, 0.0), (0.5, 0.8)])
def test_last_step_equals_output_and_batched_rows_equal_unbatched(threshold, temperature):
    model = tiny_llada2()
    s = LLaDA2Settings(gen_length=10, steps=4, block_length=4, threshold=threshold, temperature=temperature)
    ids, mask = left_pad(PROMPTS)
    gens = lambda idx: [torch.Generator().manual_seed(7 + i) for i in idx]  # noqa: E731
    out = generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=None, generators=gens(range(3)), capture=True)
    P = ids.shape[1]
    assert out.sequences.shape == (3, P + 10)
    assert (out.sequences[:, P:] != MASK_ID).all()
    for b in range(3):
        T = int(out.steps_run[b])
        assert T >= 2 and int(out.forward_passes[b]) == T
        assert torch.equal(out.trajectory[b, T - 1].long(), out.sequences[b, P:])
        one_ids, one_mask = left_pad([PROMPTS[b]])
        one = generate(model, one_ids, one_mask, s, mask_id=MASK_ID, eos_id=None, generators=gens([b]), capture=True)
        assert torch.equal(one.sequences[0, -10:], out.sequences[b, P:])
        assert torch.equal(one.trajectory[0], out.trajectory[b, :T]) and int(one.steps_run[0]) == T
    if threshold == 0.0:  # every masked position clears a zero threshold: one step per block
        # blocks from the one holding the prompt's end to the one holding its last generated token
        assert out.steps_run.tolist() == [-(-(len(p) + 10) // 4) - len(p) // 4 for p in PROMPTS] == [4, 4, 3]


def test_threshold_one_commits_the_schedule_share_per_step():
    model = tiny_llada2()
    s = LLaDA2Settings(gen_length=8, steps=4, block_length=4, threshold=1.0)
    ids, mask = left_pad([[5, 40, 41, 42]])  # a whole prompt block, then two blocks of 4
    out = generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=None, capture=True)
    assert out.steps_run.tolist() == [8]
    masks = (out.trajectory[0] == MASK_ID).sum(-1).tolist()  # later blocks are still masked
    assert masks == [4, 4, 4, 4, 0, 0, 0, 0]


def test_eos_ends_the_output_and_eos_early_stop_stops_decoding():
    class EosEverywhere(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, **kw):
            out = self.inner(x, **kw)
            out.logits[..., EOS_ID] += 100.0
            return out

    model = EosEverywhere(tiny_llada2())
    ids, mask = left_pad([[5, 40, 41, 42]])
    for early in (False, True):
        s = LLaDA2Settings(gen_length=8, steps=4, block_length=4, threshold=0.0, eos_early_stop=early)
        out = generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=EOS_ID, capture=True)
        assert (out.sequences[0, 4:] == EOS_ID).all()
        assert out.steps_run.tolist() == [1]  # the first block is all EOS: decoding stops
        assert torch.equal(out.trajectory[0, -1].long(), out.sequences[0, 4:])


@pytest.mark.parametrize("editing_threshold,temperature", [(0.0, 0.0), (0.5, 0.8)])
def test_llada21_editing_last_step_equals_output_and_batched_rows_equal_unbatched(editing_threshold, temperature):
    model = tiny_llada2()
    s = LLaDA2Settings(gen_length=10, block_length=4, threshold=0.9, temperature=temperature,
                       editing_threshold=editing_threshold, max_post_steps=3)
    ids, mask = left_pad(PROMPTS)
    gens = lambda idx: [torch.Generator().manual_seed(7 + i) for i in idx]  # noqa: E731
    out = generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=None, generators=gens(range(3)), capture=True)
    P = ids.shape[1]
    assert (out.sequences[:, P:] != MASK_ID).all()
    for b in range(3):
        T = int(out.steps_run[b])
        assert 2 <= T <= s.max_steps
        assert torch.equal(out.trajectory[b, T - 1].long(), out.sequences[b, P:])
        one_ids, one_mask = left_pad([PROMPTS[b]])
        one = generate(model, one_ids, one_mask, s, mask_id=MASK_ID, eos_id=None, generators=gens([b]), capture=True)
        assert torch.equal(one.sequences[0, -10:], out.sequences[b, P:])
        assert torch.equal(one.trajectory[0], out.trajectory[b, :T])
    if editing_threshold == 0.0:  # a committed token whose x0 changes is re-written: some step edits one
        changed = (out.trajectory[:, 1:] != out.trajectory[:, :-1]) & (out.trajectory[:, :-1] != MASK_ID)
        assert bool(changed.any())


def test_llada21_without_edits_a_block_ends_one_step_after_its_last_mask():
    model = tiny_llada2()
    s = LLaDA2Settings(gen_length=8, block_length=4, threshold=0.0, editing_threshold=1.0)
    ids, mask = left_pad([[5, 40, 41, 42]])
    out = generate(model, ids, mask, s, mask_id=MASK_ID, eos_id=None, capture=True)
    assert out.steps_run.tolist() == [4]  # per block: one step commits all, one finds nothing to edit


def test_official_defaults_resolve_and_model_args_override():
    from lm_eval_temporal.families import detect, get
    from lm_eval_temporal.options import parse_options

    fam = get("llada2")
    assert detect({"model_type": "llada2_moe", "architectures": ["LLaDA2MoeModelLM"]}) is fam
    cfg, rounded = fam.settings(None, parse_options({}), {"max_gen_toks": 64}, {})
    assert rounded == [] and cfg.gen_length == 64 and not cfg.fixed_schedule
    assert {k: getattr(cfg, k) for k in OFFICIAL} == OFFICIAL
    opts = parse_options({"gen_length": "32", "steps": "8", "block_length": "16", "temperature": "0",
                          "threshold": "0.7", "eos_early_stop": "true"})
    cfg, _ = fam.settings(None, opts, {}, {})
    assert (cfg.gen_length, cfg.steps, cfg.block_length, cfg.threshold, cfg.eos_early_stop) == (32, 8, 16, 0.7, True)


@pytest.mark.parametrize("name, editing", [
    ("inclusionAI/LLaDA2.1-mini", 0.9), ("/models/llada2_1-mini", 0.9), ("inclusionAI/LLaDA2.0-mini", None),
    ("/models/LLaDA2.1-mini/../LLaDA2.0-mini", None), ("/work/llada2", None)])
def test_a_checkpoint_named_llada21_decodes_with_21s_editing_by_default(name, editing):
    from types import SimpleNamespace

    from lm_eval_temporal.families import get
    from lm_eval_temporal.options import parse_options

    fam = get("llada2")
    cfg, _ = fam.settings(SimpleNamespace(name=name), parse_options({}), {"max_gen_toks": 64}, {})
    assert cfg.editing_threshold == editing and cfg.max_post_steps == 16
    cfg, _ = fam.settings(SimpleNamespace(name=name), parse_options({"editing_threshold": "0.5"}), {}, {})
    assert cfg.editing_threshold == 0.5


def test_options_are_checked_and_other_families_refuse_them():
    from lm_eval_temporal.errors import OptionError
    from lm_eval_temporal.families import get
    from lm_eval_temporal.options import check_family, parse_options

    with pytest.raises(OptionError, match="threshold"):
        parse_options({"threshold": "1.5"})
    with pytest.raises(OptionError, match="threshold.*not used by llada"):
        check_family(parse_options({"threshold": "0.9"}), get("llada"))
    with pytest.raises(OptionError, match="eos_early_stop.*not used by dream"):
        check_family(parse_options({"eos_early_stop": "true"}), get("dream"))
    with pytest.raises(OptionError, match="editing_threshold.*not used by llada"):
        check_family(parse_options({"editing_threshold": "0.9"}), get("llada"))
    with pytest.raises(OptionError, match="alg.*not used by llada2"):
        check_family(parse_options({"alg": "entropy"}), get("llada2"))


@pytest.mark.slow
def test_llada2_checkpoint_through_lm_eval_dllm_temporal(tmp_path):
    from test_lm_eval_cli import family_run

    records = family_run(f"pretrained={build_tiny_llada2(tmp_path / 'llada2')},gen_length=16,block_length=8,steps=4",
                         tmp_path)
    assert all(rec.steps_run >= 2 for rec in records)
