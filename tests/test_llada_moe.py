"""The LLaDA-MoE family on a tiny random checkpoint built here (no network): the model's
parameter names are the reference's (ZHZisZZ/dllm ``modeling_lladamoe.py``), its logits are
a plain re-computation of that architecture, checkpoints saved by the package's class load back
identically (also under the hub's ``model_type: "llada"``), LLaDA's sampler decodes it with
capture, batched rows equal unbatched ones, the official defaults resolve, and an ``lm_eval``
CLI run reports the temporal metrics."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from tiny_models import BOS_ID, EOS_ID, PAD_ID, build_tokenizer

from lm_eval_temporal import trace
from lm_eval_temporal.backend import LLaDATemporalLM
from lm_eval_temporal.errors import OptionError
from lm_eval_temporal.families import detect, get
from lm_eval_temporal.families.llada_moe import official_defaults
from lm_eval_temporal.families.llada_moe.model import LLaDAMoEConfig, LLaDAMoEModelLM
from lm_eval_temporal.loading import load_model
from lm_eval_temporal.options import parse_options

torch.set_num_threads(1)  # tiny matrices: extra threads only add synchronisation

LAYERS = ("dense", "moe", "moe")  # moe_layer_freq [0, 1, 1]: both kinds of feed-forward
EXPERTS = 4
PROMPTS = ["Q:1+2=?", "Q:30-7=?", "hello"]
GEN_KWARGS = {"until": [], "max_gen_toks": 16}


def tiny_config(**overrides) -> LLaDAMoEConfig:
    kw = dict(vocab_size=128, hidden_size=32, dense_intermediate_size=48, expert_intermediate_size=16,
              shared_expert_intermediate_size=24, num_hidden_layers=len(LAYERS), num_attention_heads=4,
              num_key_value_heads=2, num_experts=EXPERTS, num_experts_per_tok=2,
              moe_layer_freq=[int(k == "moe") for k in LAYERS], moe_router_enable_expert_bias=True,
              qk_layernorm=True, partial_rotary_factor=0.5, rope_theta=10000.0, max_position_embeddings=512,
              pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID,
              initializer_range=0.5)  # wide init: a random tiny model with clear, varied predictions
    kw.update(overrides)
    return LLaDAMoEConfig(**kw)


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> LLaDAMoEModelLM:
    torch.manual_seed(seed)
    model = LLaDAMoEModelLM(tiny_config()).to(dtype).eval()
    with torch.no_grad():  # a non-zero expert bias, so that the test sees it act
        for layer in model.model.layers:
            if getattr(layer.mlp, "expert_bias", None) is not None:
                layer.mlp.expert_bias.uniform_(-0.2, 0.2)
    return model


def build_tiny_llada_moe(out: Path, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tiny_model(seed).save_pretrained(str(out))
    build_tokenizer().save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
    return build_tiny_llada_moe(tmp_path_factory.mktemp("llada_moe"))


def reference_keys(config: LLaDAMoEConfig) -> set[str]:
    """The checkpoint keys of the reference LLaDAMoEModelLM (read off its module tree):
    embed_tokens, per layer self_attn.{q,k,v,o}_proj and {q,k}_norm (qk_layernorm), the two
    layer norms, and either a dense mlp.{gate,up,down}_proj or the router mlp.gate, the experts
    mlp.experts.E.{gate,up,down}_proj, the buffer mlp.expert_bias and shared_expert.*; norm; lm_head."""
    swiglu = ("gate_proj", "up_proj", "down_proj")
    keys = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i, kind in enumerate(LAYERS):
        p = f"model.layers.{i}."
        keys |= {p + f"self_attn.{n}.weight" for n in ("q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm")}
        keys |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        if kind == "dense":
            keys |= {p + f"mlp.{n}.weight" for n in swiglu}
        else:
            keys |= {p + "mlp.gate.weight", p + "mlp.expert_bias"}
            keys |= {p + f"mlp.experts.{e}.{n}.weight" for e in range(EXPERTS) for n in swiglu}
            keys |= {p + f"shared_expert.{n}.weight" for n in swiglu}
    return keys


def reference_logits(sd: dict[str, torch.Tensor], c: LLaDAMoEConfig, ids: torch.Tensor,
                     pad: torch.Tensor | None = None) -> torch.Tensor:
    """The architecture written out plainly from the state dict: per-token expert loops, explicit
    softmax attention, RoPE on the first half of each head by angle pairs (x1, x2)."""
    B, L = ids.shape
    nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.hidden_size // c.num_attention_heads
    rot = int(hd * c.partial_rotary_factor)
    inv_freq = 1.0 / c.rope_theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * inv_freq
    cos, sin = ang.cos(), ang.sin()  # [L, rot/2]

    def rope(t):
        x1, x2, rest = t[..., : rot // 2], t[..., rot // 2: rot], t[..., rot:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)

    def rms(v, w):
        return w * v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps)

    def lin(v, name):
        return v @ sd[name].T

    def swiglu(v, p):
        return lin(F.silu(lin(v, p + "gate_proj.weight")) * lin(v, p + "up_proj.weight"), p + "down_proj.weight")

    x = sd["model.embed_tokens.weight"][ids]
    for i, kind in enumerate(LAYERS):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = rms(lin(h, p + "self_attn.q_proj.weight").view(B, L, nh, hd), sd[p + "self_attn.q_norm.weight"])
        k = rms(lin(h, p + "self_attn.k_proj.weight").view(B, L, nkv, hd), sd[p + "self_attn.k_norm.weight"])
        v = lin(h, p + "self_attn.v_proj.weight").view(B, L, nkv, hd)
        q, k, v = rope(q.transpose(1, 2)), rope(k.transpose(1, 2)), v.transpose(1, 2)
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if pad is not None:
            scores = scores.masked_fill(~pad.bool()[:, None, None, :], float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, -1)
        x = x + lin(att, p + "self_attn.o_proj.weight")
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        if kind == "dense":
            f = swiglu(h, p + "mlp.")
        else:
            f = swiglu(h, p + "shared_expert.")
            for b in range(B):
                for t in range(L):
                    probs = lin(h[b, t], p + "mlp.gate.weight").softmax(-1) + sd[p + "mlp.expert_bias"]
                    w, chosen = probs.topk(c.num_experts_per_tok)
                    for wj, e in zip(w, chosen.tolist()):
                        f[b, t] = f[b, t] + wj * swiglu(h[b, t], p + f"mlp.experts.{e}.")
        x = x + f
    return lin(rms(x, sd["model.norm.weight"]), "lm_head.weight")


def test_parameter_names_are_the_reference_checkpoint_keys():
    model = tiny_model()
    assert set(model.state_dict()) == reference_keys(model.config)


def test_logits_equal_a_plain_computation_of_the_architecture_with_padding():
    model = tiny_model(dtype=torch.float64)
    sd = {k: v for k, v in model.state_dict().items()}
    ids = torch.randint(4, 100, (2, 9))
    pad = torch.ones_like(ids)
    pad[1, :3] = 0  # a left-padded row
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=pad).logits
        keep = model(input_ids=ids, attention_mask=pad, logits_to_keep=4).logits
    want = reference_logits(sd, model.config, ids, pad)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    torch.testing.assert_close(keep, got[:, -4:], rtol=0, atol=1e-12)
    # the left-padded row's real positions predict what the unpadded prompt does (RoPE is relative)
    alone = model(input_ids=ids[1:, 3:]).logits
    torch.testing.assert_close(got[1:, 3:], alone, rtol=0, atol=1e-9)


def test_saved_checkpoint_loads_back_by_family_with_identical_logits(moe_dir):
    loaded = load_model(str(moe_dir), device="cpu", dtype="float32")
    assert loaded.family == "llada_moe" and type(loaded.model) is LLaDAMoEModelLM
    assert (loaded.mask_id, loaded.eos_id, loaded.pad_id) == (0, EOS_ID, PAD_ID)
    assert_same_model(loaded.model, tiny_model())


def assert_same_model(loaded: LLaDAMoEModelLM, built: LLaDAMoEModelLM) -> None:
    """Every tensor of the checkpoint (the expert_bias buffers included) identical, hence the
    logits equal up to float32 rounding (the loaded tensors live in other memory, where the
    matrix kernels may block differently)."""
    want = built.state_dict()
    got = loaded.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    ids = torch.randint(4, 100, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, built(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_hub_style_config_is_recognised_by_architecture_and_its_mask_token_found(moe_dir, tmp_path):
    """The hub's config.json says model_type "llada" (the dense model's) and has no
    mask_token_id; its tokenizer has <|mask|> without declaring it, and <|role_end|>."""
    hub = tmp_path / "hub"
    hub.mkdir()
    for f in moe_dir.iterdir():
        if f.name.endswith((".safetensors", ".json")) and not f.name.startswith(("tokenizer", "special")):
            (hub / f.name).write_bytes(f.read_bytes())
    config = json.loads((hub / "config.json").read_text())
    config.update(model_type="llada", auto_map={"AutoModel": "modeling_lladamoe.LLaDAMoEModelLM"})
    config.pop("mask_token_id", None)
    (hub / "config.json").write_text(json.dumps(config))
    tok = build_tokenizer()
    tok.mask_token = None
    tok.add_special_tokens({"additional_special_tokens": ["<|mask|>", "<|role_end|>"]})
    tok.save_pretrained(str(hub))
    assert detect(config).name == "llada_moe"
    loaded = load_model(str(hub), device="cpu", dtype="float32")
    vocab = loaded.tokenizer.get_vocab()
    assert loaded.family == "llada_moe" and loaded.mask_id == vocab["<|mask|>"]
    assert vocab["<|role_end|>"] in loaded.stop_ids
    assert_same_model(loaded.model, tiny_model())
    with pytest.raises(OptionError, match="family='llada': this checkpoint is a llada_moe model"):
        LLaDATemporalLM(pretrained=str(hub), family="llada")


def test_official_defaults_resolve_to_dllm_eval_schedule():
    family = get("llada_moe")
    cfg, rounded = family.settings(None, parse_options({}), {"max_gen_toks": 64}, {})
    assert (cfg.gen_length, cfg.steps, cfg.block_length, cfg.temperature, cfg.cfg_scale, cfg.remasking) == \
        (64, 64, 64, 0.0, 0.0, "low_confidence") and rounded == []
    cfg, _ = family.settings(None, parse_options({"gen_length": "16"}), {"max_gen_toks": 64}, {})
    assert (cfg.gen_length, cfg.steps, cfg.block_length) == (16, 16, 16)
    opts = parse_options({"gen_length": "16", "steps": "8", "block_length": "8"})
    cfg, _ = family.settings(None, opts, {"max_gen_toks": 64}, {})
    assert (cfg.gen_length, cfg.steps, cfg.block_length) == (16, 8, 8)
    assert official_defaults(parse_options({}), {}) == {"gen_length": 256, "steps": 256, "block_length": 256}


def test_captured_last_step_is_the_final_output(moe_dir):
    loaded = load_model(str(moe_dir), device="cpu", dtype="float32")
    family = get("llada_moe")
    enc = loaded.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    cfg, _ = family.settings(loaded, parse_options({"gen_length": "16", "steps": "8", "block_length": "8",
                                                    "temperature": "0.5"}), {}, {})
    out = family.denoise(loaded, enc.input_ids, enc.attention_mask, cfg, seeds=[1, 2, 3], capture=True)
    P = enc.input_ids.shape[1]
    assert out.trajectory.shape == (3, 8, 16)
    assert torch.equal(out.trajectory[:, -1].long(), out.sequences[:, P:].cpu())
    assert (out.sequences[:, P:] != loaded.mask_id).all()


def requests():
    doc = {"_temporal": {"task": "gsm8k"}, "gold": "3"}
    return [Instance("generate_until", doc, (p, dict(GEN_KWARGS)), i, metadata=("arith_chain", i, 1))
            for i, p in enumerate(PROMPTS)]


def test_batched_rows_equal_unbatched_rows_through_the_pipeline(moe_dir):
    args = dict(pretrained=str(moe_dir), gen_length=16, steps=8, block_length=8, temperature=0.7)
    batched = LLaDATemporalLM(batch_size=3, **args)
    out = batched.generate_until(requests(), disable_tqdm=True)
    assert batched.family.name == "llada_moe"
    assert LLaDATemporalLM(batch_size=1, **args).generate_until(requests(), disable_tqdm=True) == out
    records = [trace.split(r)[1] for r in out]
    assert all(rec.steps_run == 8 and rec.nfe == 8 for rec in records)


def test_llada_moe_refuses_what_it_does_not_take(moe_dir):
    with pytest.raises(OptionError, match="prefix_cache: not used by llada_moe models"):
        LLaDATemporalLM(pretrained=str(moe_dir), prefix_cache=True)
    with pytest.raises(OptionError, match="t_min: not used by llada_moe models"):
        LLaDATemporalLM(pretrained=str(moe_dir), t_min=0.1)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="partial_rotary_factor"):
        tiny_config(partial_rotary_factor=-1)
    with pytest.raises(ValueError, match="moe_layer_freq"):
        tiny_config(moe_layer_freq=[1])
    with pytest.raises(ValueError, match="rope_scaling of type 'yarn'"):
        tiny_config(rope_scaling={"rope_type": "yarn", "factor": 2.0})


@pytest.mark.slow
def test_lm_eval_cli_run_reports_temporal_metrics(moe_dir, tmp_path):
    """``lm_eval --model dllm_temporal`` on the checkpoint directory: exact_match / final_pass /
    ever_pass / tse / tpf, and at least two captured steps per sample."""
    lm_eval = os.path.join(os.path.dirname(sys.executable), "lm_eval")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    r = subprocess.run([lm_eval, "--model", "dllm_temporal", "--model_args",
                        f"pretrained={moe_dir},gen_length=16,steps=8,block_length=8", "--tasks", "arith_chain",
                        "--limit", "3", "--batch_size", "3", "--log_samples", "--output_path", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "out" / "**" / "results_*.json"), recursive=True)
    results = json.loads(Path(path).read_text())
    res = results["results"]["arith_chain"]
    for m in ("exact_match", "final_pass", "ever_pass", "tse", "tpf"):
        assert isinstance(res[f"{m},none"], float) and not math.isnan(res[f"{m},none"]), m
    (samples,) = glob.glob(str(tmp_path / "out" / "**" / "samples_arith_chain_*.jsonl"), recursive=True)
    records = [trace.split(json.loads(line)["resps"][0][0])[1] for line in Path(samples).read_text().splitlines()]
    assert len(records) == 3 and all(rec.steps_run >= 2 for rec in records)
    assert res["tpf,none"] == pytest.approx(sum(rec.tokens for rec in records) / sum(rec.nfe for rec in records))
