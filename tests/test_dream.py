"""The Dream family (Dream / DiffuCoder / Dream-Coder) on tiny random checkpoints, offline."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from lm_eval_temporal.families.dream import OFFICIAL, DreamSettings
from lm_eval_temporal.families.dream.model import DreamModel, padding_inputs
from lm_eval_temporal.families.dream.sampler import generate, shifted_logits
from tiny_models import MASK_ID, PAD_ID, build_tiny_dream, tiny_dream

torch.set_num_threads(1)

PROMPTS = [[5, 40, 41, 42, 43, 44, 45], [5, 50, 51], [5, 60, 61, 62, 63]]


def left_pad(rows, pad=PAD_ID):
    P = max(map(len, rows))
    ids = torch.tensor([[pad] * (P - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


class NoMaskPrediction(torch.nn.Module):
    """The model with the mask token's logit at -inf (a committed position then never holds
    the mask id, so counting masks counts commits) and the masked count of each call's canvas."""

    def __init__(self, model, P):
        super().__init__()
        self.model, self.config, self.P, self.masked = model, model.config, P, []

    def forward(self, x, **kw):
        self.masked.append((x[:, self.P:] == MASK_ID).sum(dim=1).tolist())
        out = self.model(x, **kw)
        out.logits[..., MASK_ID] = -torch.inf
        return out


# ---------------------------------------------------------------- checkpoint and model
def test_checkpoint_saves_dream_fields_and_qwen2_keys_and_loads_back(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from lm_eval_temporal.loading import load_model

    ckpt = build_tiny_dream(tmp_path / "dream")
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["model_type"] == "Dream" and cfg["architectures"] == ["DreamModel"]
    for field in ("rope_theta", "num_key_value_heads", "mask_token_id", "pad_token_id", "rms_norm_eps", "max_position_embeddings"):
        assert field in cfg, field
    loaded = load_model(str(ckpt), device="cpu")
    assert loaded.family == "dream" and isinstance(loaded.model, DreamModel)
    assert (loaded.mask_id, loaded.pad_id) == (MASK_ID, PAD_ID)
    # Dream's checkpoint keys are Qwen2's (Dream is initialised from Qwen2.5)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    assert set(loaded.model.state_dict()) == set(qwen.state_dict())
    ids = torch.tensor([PROMPTS[0]])
    assert torch.equal(loaded.model(ids).logits, tiny_dream()(ids).logits)


def test_logits_equal_transformers_qwen2_with_full_attention():
    """The same weights in transformers' Qwen2 switched to bidirectional attention give the same
    logits, padded or not: the blocks, RoPE at the position ids and the masks are Dream's."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    ours = tiny_dream()
    qcfg = Qwen2Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, rms_norm_eps=1e-6,
                       attn_implementation="sdpa")
    qcfg.is_causal = False
    qwen = Qwen2ForCausalLM(qcfg).eval()
    for layer in qwen.model.layers:
        layer.self_attn.is_causal = False
    qwen.load_state_dict(ours.state_dict())
    ids, mask = left_pad(PROMPTS)
    positions, _ = padding_inputs(mask)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        theirs = qwen(ids, attention_mask=mask, position_ids=positions).logits
        alone = ours(torch.tensor([PROMPTS[1]])).logits
    real = mask.bool()
    assert torch.allclose(mine[real], theirs[real], atol=1e-5, rtol=1e-5)
    assert torch.allclose(mine[1, -3:], alone[0], atol=1e-5)
    assert not torch.allclose(ours(ids[:1]).logits[0, :-1], ours(ids[:1, :-1]).logits[0], atol=1e-3)  # not causal


# ---------------------------------------------------------------- sampler
class PositionEcho(torch.nn.Module):
    """Logits whose argmax at position j is token 10 + j, whatever the input."""

    config = SimpleNamespace(pad_token_id=PAD_ID, max_position_embeddings=None)

    def forward(self, x, **kw):
        B, L = x.shape
        logits = torch.zeros(B, L, 128)
        logits[:, torch.arange(L), 10 + torch.arange(L)] = 5.0
        return SimpleNamespace(logits=logits)


def test_logits_are_shifted_one_position_right():
    logits = torch.arange(4.0).view(1, 4, 1)
    assert shifted_logits(logits).flatten().tolist() == [0.0, 0.0, 1.0, 2.0]
    P, G = 4, 6
    out = generate(PositionEcho(), torch.full((1, P), 7), None,
                   DreamSettings(gen_length=G, steps=3, temperature=0.0, alg="maskgit_plus"), mask_id=MASK_ID)
    # the token at position P + i is predicted at position P + i - 1
    assert out.sequences[0, P:].tolist() == [10 + P + i - 1 for i in range(G)]


def _official_counts(G, steps, eps=1e-3):
    timesteps = torch.linspace(1, eps, steps + 1)
    left, counts = G, []
    for i in range(steps):
        k = left if i == steps - 1 else int(torch.tensor(float(left)) * (1 - timesteps[i + 1] / timesteps[i]))
        counts.append(k)
        left -= k
    return counts


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy", "origin"])
@pytest.mark.parametrize("sampled", [False, True])
def test_each_alg_commits_the_scheduled_tokens_per_step(alg, sampled):
    G, steps = 12, 5
    ids, mask = left_pad(PROMPTS)
    model = NoMaskPrediction(tiny_dream(), ids.shape[1])
    settings = DreamSettings(gen_length=G, steps=steps, alg=alg, temperature=0.7 if sampled else 0.0,
                             alg_temp=0.3 if sampled else 0.0, top_k=20)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    out = generate(model, ids, mask, settings, mask_id=MASK_ID, generators=gens, capture=True)
    masked = torch.tensor(model.masked + [[0, 0, 0]])  # before each step, and after the last
    committed = (masked[:-1] - masked[1:]).T  # [rows, steps]
    assert len(model.masked) == steps and bool((out.sequences[:, -G:] != MASK_ID).all())
    if alg == "origin":  # each masked position commits with probability 1 - s/t: counts vary
        assert bool((committed >= 0).all()) and committed.sum(dim=1).tolist() == [G] * 3
    else:
        assert committed.tolist() == [_official_counts(G, steps)] * 3
    assert out.trajectory.shape == (3, steps, G) and out.trajectory.dtype == torch.int32
    assert torch.equal(out.trajectory[:, -1].long(), out.sequences[:, -G:])  # the last step is the output
    assert out.steps_run.tolist() == [steps] * 3 and out.forward_passes.tolist() == [steps] * 3


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy", "origin"])
@pytest.mark.parametrize("sampled", [False, True])
def test_left_padded_batch_rows_equal_unbatched_rows(alg, sampled):
    G, steps = 10, 5
    model = tiny_dream(dtype=torch.float64)
    settings = DreamSettings(gen_length=G, steps=steps, alg=alg, temperature=0.8 if sampled else 0.0,
                             top_p=0.9, alg_temp=0.5 if sampled else 0.0)
    ids, mask = left_pad(PROMPTS)
    batch = generate(model, ids, mask, settings, mask_id=MASK_ID, capture=True,
                     generators=[torch.Generator().manual_seed(10 + b) for b in range(3)])
    for b, prompt in enumerate(PROMPTS):
        alone = generate(model, torch.tensor([prompt]), None, settings, mask_id=MASK_ID, capture=True,
                         generators=[torch.Generator().manual_seed(10 + b)])
        assert torch.equal(batch.sequences[b, -G:], alone.sequences[0, -G:]), b
        assert torch.equal(batch.trajectory[b], alone.trajectory[0]), b


def _official_loop(model, prompt, s: DreamSettings, seed):
    """Dream's diffusion_generate for one unpadded prompt, written from its description with
    the global RNG (as the official code draws), to check that a row's generator draws the same."""
    torch.manual_seed(seed)
    x = torch.cat([prompt, torch.full((1, s.gen_length), MASK_ID)], dim=1)
    ts = torch.linspace(1, s.eps, s.steps + 1)
    for i in range(s.steps):
        m = x == MASK_ID
        logits = model(x).logits
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)[m]
        if s.temperature > 0:
            logits = logits / s.temperature
        if s.top_p is not None and s.top_p < 1:
            srt, idx = torch.sort(logits, descending=True)
            drop = torch.softmax(srt, -1).cumsum(-1) > s.top_p
            drop[..., 1:] = drop[..., :-1].clone()
            drop[..., 0] = False
            logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, idx, drop), torch.finfo(logits.dtype).min)
        probs = torch.softmax(logits, -1)
        if s.alg == "origin":
            p = 1 - ts[i + 1] / ts[i] if i < s.steps - 1 else 1
            new = torch.full((int(m.sum()),), MASK_ID)
            go = torch.rand(new.shape) < p
            new[go] = torch.distributions.Categorical(probs=probs[go]).sample() if s.temperature > 0 else probs[go].argmax(-1)
            x[m] = new
            continue
        conf, x0 = probs.max(-1)
        if s.temperature > 0:
            x0 = torch.distributions.Categorical(probs=probs).sample()
            conf = probs.gather(-1, x0[:, None])[:, 0]
        if s.alg == "entropy":
            conf = (probs * torch.log(probs + 1e-10)).sum(-1)
        k = int(m.sum() / 1 * (1 - ts[i + 1] / ts[i])) if i < s.steps - 1 else int(m.sum())
        full = torch.full(x.shape, -torch.inf, dtype=conf.dtype)
        full[m] = conf
        if k:
            pick = torch.topk(full, k).indices if s.alg_temp == 0 else torch.multinomial(torch.softmax(full / s.alg_temp, -1), k)
            cand = torch.full_like(x, MASK_ID)
            cand[m] = x0
            x[0, pick[0]] = cand[0, pick[0]]
    return x


@pytest.mark.parametrize("alg,alg_temp", [("maskgit_plus", 0.4), ("entropy", 0.0), ("origin", 0.0)])
def test_a_row_seeded_with_s_draws_what_the_official_code_draws_after_manual_seed_s(alg, alg_temp):
    model = tiny_dream()
    s = DreamSettings(gen_length=10, steps=6, alg=alg, alg_temp=alg_temp, temperature=0.9, top_p=0.9)
    prompt = torch.tensor([PROMPTS[0]])
    ours = generate(model, prompt, None, s, mask_id=MASK_ID, generators=[torch.Generator().manual_seed(7)])
    assert torch.equal(ours.sequences, _official_loop(model, prompt.clone(), s, seed=7))


# ---------------------------------------------------------------- settings and options
def test_official_defaults_resolve_and_model_args_override():
    from lm_eval_temporal.families import detect, get
    from lm_eval_temporal.options import parse_options

    fam = get("dream")
    assert detect({"model_type": "Dream", "architectures": ["DreamModel"]}) is fam
    cfg, rounded = fam.settings(None, parse_options({}), {"max_gen_toks": 64}, {})
    assert rounded == [] and cfg.gen_length == 64 and cfg.steps == 64 and cfg.fixed_schedule
    assert {k: getattr(cfg, k) for k in OFFICIAL} == OFFICIAL
    opts = parse_options({"gen_length": "32", "steps": "8", "temperature": "0", "alg": "topk_margin",
                          "alg_temp": "0.5", "top_p": "1", "top_k": "40"})
    cfg, _ = fam.settings(None, opts, {"max_gen_toks": 64}, {})
    assert (cfg.gen_length, cfg.steps, cfg.temperature, cfg.alg, cfg.alg_temp, cfg.top_p, cfg.top_k) == \
        (32, 8, 0.0, "topk_margin", 0.5, 1.0, 40)


def test_options_are_checked_and_other_families_refuse_them():
    from lm_eval_temporal.errors import OptionError
    from lm_eval_temporal.families import get
    from lm_eval_temporal.options import check_family, parse_options

    with pytest.raises(OptionError, match="alg='greedy'.*origin, maskgit_plus, topk_margin, entropy"):
        parse_options({"alg": "greedy"})
    with pytest.raises(OptionError, match=r"top_p='1.5': expected a number in \(0, 1\]"):
        parse_options({"top_p": "1.5"})
    with pytest.raises(OptionError, match="alg.*not used by llada"):
        check_family(parse_options({"alg": "entropy"}), get("llada"))
    with pytest.raises(OptionError, match="block_length.*not used by dream"):
        check_family(parse_options({"block_length": "8"}), get("dream"))
    with pytest.raises(OptionError, match="early_stop.*not used by dream"):
        check_family(parse_options({"early_stop": "stable"}), get("dream"))


def test_dream_tokenizer_class_is_read_as_qwen2_without_remote_code(tmp_path):
    """The hub's tokenizer_config names the remote ``DreamTokenizer`` (Qwen2's byte-level BPE):
    the family reads the same vocab.json / merges.txt with transformers' Qwen2Tokenizer."""
    from lm_eval_temporal.families.dream import _tokenizer

    chars = [chr(c) for c in range(33, 127)] + ["Ġ"]
    (tmp_path / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DreamTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    tok = _tokenizer(str(tmp_path), None, trust_remote_code=False)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert tok.decode(tok("ab c")["input_ids"]) == "ab c"


# ---------------------------------------------------------------- lm_eval
@pytest.mark.slow
def test_dream_checkpoint_through_lm_eval_dllm_temporal(tmp_path):
    from test_lm_eval_cli import family_run

    records = family_run(f"pretrained={build_tiny_dream(tmp_path / 'dream')},gen_length=16,steps=8", tmp_path)
    assert all(rec.steps_run == 8 for rec in records)
