"""LLaDA model: strict loading of the real checkpoint layout, and the architecture of docs/algorithm.md ("LLaDA checkpoints")
checked against a naive re-implementation working from the raw state dict."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from lm_eval_temporal import LLaDAConfig, LLaDAModelLM
from tiny_models import tiny_llada

torch.set_num_threads(1)

D, H, KV, LAYERS, MLP, VOCAB = 16, 4, 2, 2, 24, 40

# The field names of GSAI-ML/LLaDA-8B-Instruct's config.json (tiny sizes), OLMo leftovers and
# the auto_map of the hub's remote code included.
LLADA_8B_STYLE_CONFIG = {
    "activation_type": "silu",
    "alibi": False,
    "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {
        "AutoConfig": "configuration_llada.LLaDAConfig",
        "AutoModel": "modeling_llada.LLaDAModelLM",
        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
    },
    "bias_for_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "d_model": D,
    "embedding_dropout": 0.0,
    "embedding_size": VOCAB,
    "eos_token_id": 36,
    "flash_attention": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "mask_token_id": 39,
    "max_sequence_length": 64,
    "mlp_hidden_size": MLP,
    "mlp_ratio": 4,
    "model_type": "llada",
    "multi_query_attention": None,
    "n_heads": H,
    "n_kv_heads": KV,
    "n_layers": LAYERS,
    "pad_token_id": 36,
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05,
    "rope": True,
    "rope_full_precision": True,
    "rope_theta": 500000.0,
    "scale_logits": False,
    "transformers_version": "4.46.3",
    "use_cache": False,
    "vocab_size": VOCAB,
    "weight_tying": False,
}


def real_layout_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the checkpoint's key names and shapes (written out by hand, not
    taken from our model, so a renamed parameter cannot go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.3
    hd = D // H
    sd = {"model.transformer.wte.weight": rand(VOCAB, D)}
    for i in range(LAYERS):
        p = f"model.transformer.blocks.{i}."
        sd.update({
            p + "attn_norm.weight": 1 + rand(D),
            p + "ff_norm.weight": 1 + rand(D),
            p + "q_proj.weight": rand(D, D),
            p + "k_proj.weight": rand(KV * hd, D),
            p + "v_proj.weight": rand(KV * hd, D),
            p + "attn_out.weight": rand(D, D),
            p + "ff_proj.weight": rand(MLP, D),
            p + "up_proj.weight": rand(MLP, D),
            p + "ff_out.weight": rand(D, MLP),
        })
    sd["model.transformer.ln_f.weight"] = 1 + rand(D)
    sd["model.transformer.ff_out.weight"] = rand(VOCAB, D)
    return sd


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("llada_8b_style")
    (d / "config.json").write_text(json.dumps(LLADA_8B_STYLE_CONFIG))
    sd = real_layout_state_dict()
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "pt"})
    return d, sd


def naive_forward(sd: dict[str, torch.Tensor], ids: torch.Tensor, theta: float = 500000.0, eps: float = 1e-5) -> torch.Tensor:
    """docs/algorithm.md ("LLaDA checkpoints") written out for one unpadded sequence in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    hd = D // H
    L = ids.shape[0]

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    def rope(t):  # t: [heads, L, hd]; rotate-half convention, frequencies repeated twice
        inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(L, dtype=torch.float64)[:, None] * inv[None, :]
        ang = torch.cat([ang, ang], -1)
        half = torch.cat([-t[..., hd // 2:], t[..., : hd // 2]], -1)
        return t * ang.cos() + half * ang.sin()

    x = sd["model.transformer.wte.weight"][ids]
    for i in range(LAYERS):
        p = f"model.transformer.blocks.{i}."
        a = rms(x, sd[p + "attn_norm.weight"])
        q = (a @ sd[p + "q_proj.weight"].T).view(L, H, hd).transpose(0, 1)
        k = (a @ sd[p + "k_proj.weight"].T).view(L, KV, hd).transpose(0, 1)
        v = (a @ sd[p + "v_proj.weight"].T).view(L, KV, hd).transpose(0, 1)
        q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / hd**0.5, -1)  # no causal mask
        y = (att @ v).transpose(0, 1).reshape(L, D)
        x = x + y @ sd[p + "attn_out.weight"].T
        f = rms(x, sd[p + "ff_norm.weight"])
        gate = torch.nn.functional.silu(f @ sd[p + "ff_proj.weight"].T)
        x = x + (gate * (f @ sd[p + "up_proj.weight"].T)) @ sd[p + "ff_out.weight"].T
    return rms(x, sd["model.transformer.ln_f.weight"]) @ sd["model.transformer.ff_out.weight"].T


def test_real_config_and_key_layout_load_strictly_through_automodel(checkpoint):
    d, sd = checkpoint
    assert isinstance(AutoConfig.from_pretrained(str(d)), LLaDAConfig)
    model, info = AutoModel.from_pretrained(str(d), output_loading_info=True)
    assert type(model) is LLaDAModelLM
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert set(model.state_dict()) == set(sd)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    cfg = model.config
    assert (cfg.mask_token_id, cfg.eos_token_id, cfg.block_type, cfg.hidden_size, cfg.num_hidden_layers) == (
        39, 36, "llama", D, LAYERS)
    assert type(AutoModelForMaskedLM.from_pretrained(str(d))) is LLaDAModelLM


def test_forward_matches_naive_architecture(checkpoint):
    d, sd = checkpoint
    model = AutoModel.from_pretrained(str(d), dtype=torch.float64).eval()
    ids = torch.tensor([3, 17, 5, 39, 39, 22, 8, 0, 31])
    with torch.no_grad():
        logits = model(input_ids=ids[None]).logits[0]
    assert logits.shape == (len(ids), VOCAB)
    torch.testing.assert_close(logits, naive_forward(sd, ids), rtol=1e-10, atol=1e-10)


def test_float32_and_bfloat16_close_to_float64(checkpoint):
    d, sd = checkpoint
    ids = torch.tensor([[3, 17, 5, 39, 39, 22]])
    ref = naive_forward(sd, ids[0])
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 0.3)):
        model = AutoModel.from_pretrained(str(d), dtype=dtype).eval()
        with torch.no_grad():
            out = model(input_ids=ids).logits[0]
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol)


def test_padding_mask_makes_left_padded_rows_equal_alone():
    model = tiny_llada(seed=0, dtype=torch.float64)
    alone = torch.tensor([[9, 14, 22, 0, 0]])
    batch = torch.tensor([[2, 2, 2, 9, 14, 22, 0, 0], [5, 6, 7, 8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [1] * 8])
    with torch.no_grad():
        a = model(input_ids=alone).logits
        b = model(input_ids=batch, attention_mask=mask).logits
        full = model(input_ids=batch[1:]).logits
    torch.testing.assert_close(b[0, 3:], a[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b[1], full[0], rtol=1e-12, atol=1e-12)


def test_logits_to_keep_returns_the_tail_and_the_sampler_uses_it():
    from lm_eval_temporal.sampler import forward_accepts

    model = tiny_llada(seed=0, dtype=torch.float64)
    batch = torch.tensor([[2, 2, 9, 14, 22, 0, 0], [5, 6, 7, 8, 9, 10, 11]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    with torch.no_grad():
        full = model(input_ids=batch, attention_mask=mask).logits
        tail = model(input_ids=batch, attention_mask=mask, logits_to_keep=3).logits
    assert tail.shape == (2, 3, full.shape[-1])
    torch.testing.assert_close(tail, full[:, -3:], rtol=1e-12, atol=1e-12)
    assert forward_accepts(model, "logits_to_keep")
    assert not forward_accepts(torch.nn.Linear(2, 2), "logits_to_keep")


def test_attention_is_bidirectional():
    model = tiny_llada(seed=0, dtype=torch.float64)
    with torch.no_grad():
        a = model(input_ids=torch.tensor([[4, 5, 6, 7]])).logits
        b = model(input_ids=torch.tensor([[4, 5, 6, 8]])).logits
    assert not torch.allclose(a[0, 0], b[0, 0])


def test_weight_tying_uses_the_embedding_as_head(tmp_path):
    model = tiny_llada(seed=0, weight_tying=True)
    assert "model.transformer.ff_out.weight" not in model.state_dict()
    model.save_pretrained(str(tmp_path))
    loaded, info = AutoModel.from_pretrained(str(tmp_path), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ids = torch.tensor([[4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_config_and_forward_errors():
    with pytest.raises(ValueError, match="d_model"):
        LLaDAConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="n_kv_heads"):
        LLaDAConfig(d_model=32, n_heads=4, n_kv_heads=3)
    model = tiny_llada(seed=0, max_sequence_length=8)
    with pytest.raises(ValueError, match="max_sequence_length=8"):
        model(input_ids=torch.zeros((1, 9), dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=torch.zeros((1, 4), dtype=torch.long), attention_mask=torch.ones(1, 5))


def test_prefix_cache_gives_the_full_forward_while_the_canvas_is_unchanged():
    from tiny_models import tiny_llada

    model = tiny_llada(seed=0, dtype=torch.float64)
    x = torch.randint(4, 100, (2, 20), generator=torch.Generator().manual_seed(0))
    attn = torch.ones(2, 20, dtype=torch.long)
    attn[0, :3] = 0  # left padding inside the cached prefix
    full = model(input_ids=x, attention_mask=attn, cache_prefix=12)
    assert len(full["prefix_cache"]) == model.config.n_layers
    suffix = model(input_ids=x[:, 12:], attention_mask=attn, prefix_cache=full["prefix_cache"]).logits
    assert torch.equal(suffix, full.logits[:, 12:])
