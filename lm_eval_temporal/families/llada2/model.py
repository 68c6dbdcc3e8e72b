"""LLaDA2.0 / LLaDA2.1 (inclusionAI/LLaDA2.0-mini, LLaDA2.1-mini: 16B MoE) for transformers 5,
weight-compatible with the hub's ``modeling_llada2_moe.py``: the same ``config.json`` fields and
``model_type`` ("llada2_moe"), the same state-dict keys, loaded with ``trust_remote_code=False``.

Architecture, top to bottom: embedding ``model.word_embeddings``; per layer RMSNorm -> fused
``query_key_value`` -> per-head RMSNorm of q and k (``use_qk_norm``) -> partial RoPE (the first
``head_dim * partial_rotary_factor`` channels) -> SDPA under a block-causal mask -> ``dense``
(residual); RMSNorm -> MLP (dense for the first ``first_k_dense_replace`` layers, else a MoE:
sigmoid group-limited routing over ``experts`` plus ``shared_experts``) (residual); final
RMSNorm ``model.norm``; head ``lm_head``.

Block-causal attention: the canvas is cut into ``block_length``-token blocks from position 0;
a token attends to every token of its own block and of earlier blocks, never later ones.

Key/value cache (:data:`KVCache`): per layer the post-RoPE keys and values of positions 0..N-1
(before the grouped heads are repeated, so it is ``num_attention_heads / num_key_value_heads``
times smaller). Given it, ``forward`` runs positions N.. only: their queries see the cached
keys and their own, so the logits equal those of a full run whenever the mask is the same, as
under block-causal attention when N is a block boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

from lm_eval_temporal.llada import RMSNorm, apply_rope, init_weights, rope_tables
from lm_eval_temporal.moe import SwiGLU, mix_experts, sigmoid_group_topk

__all__ = ["MODEL_TYPE", "KVCache", "LLaDA2Config", "LLaDA2MoeModelLM", "LLaDA2Output", "block_causal_mask"]

MODEL_TYPE = "llada2_moe"  # LLaDA2.0 and 2.1 checkpoints share it

LayerKV = tuple[torch.Tensor, torch.Tensor]  # (keys, values), each [B, kv heads, N, head_dim]
KVCache = list[LayerKV]  # one per layer


class LLaDA2Config(PretrainedConfig):
    """The field names and defaults of the hub's ``configuration_llada2_moe.py``. Fields the
    model does not use (dropouts, sliding window, cache) are kept so a saved config reads as
    the hub's."""

    model_type = MODEL_TYPE

    def __init__(self, vocab_size=30592, hidden_size=1024, intermediate_size=None, num_hidden_layers=24,
                 num_attention_heads=16, num_key_value_heads=0, hidden_act="silu", use_qkv_bias=False,
                 use_qk_norm=True, use_bias=True, rms_norm_eps=1e-05, norm_head=False, tie_word_embeddings=False,
                 embedding_dropout=0.1, attention_dropout=0.1, output_dropout=0.1, initializer_range=0.02,
                 max_position_embeddings=16384, rope_theta=10000.0, use_cache=True, use_sliding_window=False,
                 sliding_window=4096, max_window_layers=28, rope_scaling=None, pad_token_id=126081,
                 num_experts=16, num_shared_experts=0, num_experts_per_tok=2, n_group=8, topk_group=4,
                 routed_scaling_factor=2.5, moe_intermediate_size=None, first_k_dense_replace=0, head_dim=None,
                 output_router_logits=False, partial_rotary_factor=0.5, **kwargs):
        self.vocab_size, self.hidden_size, self.intermediate_size = vocab_size, hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_key_value_heads, self.hidden_act = num_key_value_heads, hidden_act
        self.use_qkv_bias, self.use_qk_norm, self.use_bias, self.norm_head = use_qkv_bias, use_qk_norm, use_bias, norm_head
        self.rms_norm_eps, self.initializer_range = rms_norm_eps, initializer_range
        self.embedding_dropout, self.attention_dropout, self.output_dropout = embedding_dropout, attention_dropout, output_dropout
        self.max_position_embeddings, self.rope_theta = max_position_embeddings, rope_theta
        self.use_cache, self.use_sliding_window, self.sliding_window = use_cache, use_sliding_window, sliding_window
        self.max_window_layers = max_window_layers
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.num_experts, self.num_shared_experts, self.num_experts_per_tok = num_experts, num_shared_experts, num_experts_per_tok
        self.n_group, self.topk_group, self.routed_scaling_factor = n_group, topk_group, routed_scaling_factor
        self.moe_intermediate_size, self.first_k_dense_replace = moe_intermediate_size, first_k_dense_replace
        self.output_router_logits, self.partial_rotary_factor = output_router_logits, partial_rotary_factor
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        # What this implementation does not carry is refused, not silently computed otherwise.
        if hidden_act != "silu":
            raise ValueError(f"hidden_act={hidden_act!r}: this LLaDA2 implementation has SwiGLU (silu) only")
        if num_key_value_heads <= 0 or num_attention_heads % num_key_value_heads:
            raise ValueError(f"num_key_value_heads ({num_key_value_heads}) must divide num_attention_heads "
                             f"({num_attention_heads})")
        if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type", "default")) != "default":
            raise ValueError(f"rope_scaling={rope_scaling!r}: this LLaDA2 implementation has the default RoPE only")
        if norm_head:
            raise ValueError("norm_head=True: not carried by this LLaDA2 implementation (the released checkpoints have it off)")


def block_causal_mask(length: int, block_length: int, device=None) -> torch.Tensor:
    """[1, 1, L, L] boolean: query i sees key j iff ``j // block_length <= i // block_length``."""
    block = torch.arange(length, device=device) // block_length
    return (block[None, :] <= block[:, None])[None, None]


class LLaDA2Gate(nn.Module):
    """The router's parameters (``gate.weight``, the ``gate.expert_bias`` buffer saved with the checkpoint)."""

    def __init__(self, config: LLaDA2Config):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(config.num_experts, config.hidden_size))
        self.register_buffer("expert_bias", torch.zeros(config.num_experts))


class LLaDA2SparseMoe(nn.Module):
    def __init__(self, config: LLaDA2Config):
        super().__init__()
        self.config = config
        self.experts = nn.ModuleList(SwiGLU(config.hidden_size, config.moe_intermediate_size) for _ in range(config.num_experts))
        self.gate = LLaDA2Gate(config)
        # the hub builds shared experts whenever the field is not None (0 gives empty weights)
        if config.num_shared_experts is not None:
            self.shared_experts = SwiGLU(config.hidden_size, config.moe_intermediate_size * config.num_shared_experts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        flat = x.reshape(-1, x.shape[-1])
        logits = F.linear(flat.float(), self.gate.weight.float())  # routing in float32, as the hub
        weights, chosen = sigmoid_group_topk(logits, c.num_experts_per_tok, c.n_group, c.topk_group,
                                             self.gate.expert_bias, c.routed_scaling_factor)
        # weighed and summed in float32 (the weights' dtype), then cast: the hub's moe_infer
        y = mix_experts(flat, self.experts, weights, chosen, sum_dtype=weights.dtype).view_as(x)
        if c.num_shared_experts is not None:
            y = y + self.shared_experts(x)
        return y


class LLaDA2Attention(nn.Module):
    def __init__(self, config: LLaDA2Config):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.query_key_value = nn.Linear(config.hidden_size, (self.n_heads + 2 * self.n_kv) * self.head_dim,
                                         bias=config.use_qkv_bias)
        if config.use_qk_norm:
            self.query_layernorm = RMSNorm(self.head_dim, config.rms_norm_eps)
            self.key_layernorm = RMSNorm(self.head_dim, config.rms_norm_eps)
        self.dense = nn.Linear(self.n_heads * self.head_dim, config.hidden_size, bias=config.use_bias)
        self.qk_norm = config.use_qk_norm

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor,
                past: LayerKV | None) -> tuple[torch.Tensor, LayerKV]:
        """(output, the keys and values of the past positions and these)."""
        B, L, _ = x.shape
        qkv = self.query_key_value(x).view(B, L, self.n_heads + 2 * self.n_kv, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.split([self.n_heads, self.n_kv, self.n_kv], dim=2))
        if self.qk_norm:
            q, k = self.query_layernorm(q), self.key_layernorm(k)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        groups = self.n_heads // self.n_kv
        y = F.scaled_dot_product_attention(q, k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1),
                                           attn_mask=mask)
        return self.dense(y.transpose(1, 2).reshape(B, L, -1)), (k, v)


class LLaDA2DecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: LLaDA2Config, index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attention = LLaDA2Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        moe = config.num_experts is not None and index >= config.first_k_dense_replace
        self.mlp = LLaDA2SparseMoe(config) if moe else SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor,
                past: LayerKV | None) -> tuple[torch.Tensor, LayerKV]:
        y, kv = self.attention(self.input_layernorm(x), rope, mask, past)
        x = x + y
        return x + self.mlp(self.post_attention_layernorm(x)), kv


class LLaDA2Backbone(nn.Module):
    """Holds the parameters named ``model.*`` in the checkpoint."""

    def __init__(self, config: LLaDA2Config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LLaDA2DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


@dataclass
class LLaDA2Output(MaskedLMOutput):
    """``logits`` [B, L, V]; ``cache``: the keys/values of the cached positions and these
    (``use_cache=True`` only)."""

    cache: KVCache | None = None


class LLaDA2MoeModelLM(PreTrainedModel):
    """LLaDA2's denoiser: ``forward(input_ids, block_length=32).logits`` is [B, L, V]. The class
    name is the hub's ``architectures`` entry."""

    config_class = LLaDA2Config
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDA2DecoderLayer"]
    _supports_sdpa = True

    def __init__(self, config: LLaDA2Config):
        super().__init__(config)
        self.model = LLaDA2Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)
        if isinstance(module, LLaDA2Gate):  # its router weight is a bare parameter
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            nn.init.zeros_(module.expert_bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.word_embeddings = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.LongTensor | None = None, block_length: int | None = None,
                cache: KVCache | None = None, use_cache: bool = False, **kwargs) -> LLaDA2Output:
        """The input is positions N..N+L-1, N the length of ``cache`` (0 without).
        ``attention_mask``: a 4-D boolean mask [., ., L, N + L] used as given; else
        ``block_length`` builds the block-causal mask (blocks from position 0); one of them is
        needed (the model is never run with full or causal attention). ``position_ids`` default
        N..N+L-1. ``use_cache``: return the cache of positions 0..N+L-1 (the config's
        ``use_cache`` field is the hub's and decides nothing here)."""
        x = self.model.word_embeddings(input_ids)
        B, L, _ = x.shape
        N = cache[0][0].shape[2] if cache else 0
        if attention_mask is None:
            if block_length is None:
                raise ValueError("LLaDA2 forward: pass block_length (block-causal attention) or a 4-D boolean attention_mask")
            attention_mask = block_causal_mask(N + L, block_length, x.device)[..., N:, :]
        elif attention_mask.dim() != 4 or attention_mask.dtype != torch.bool or attention_mask.shape[-1] != N + L:
            raise ValueError(f"attention_mask: expected a 4-D boolean mask over {N + L} keys, got shape "
                             f"{tuple(attention_mask.shape)}, dtype {attention_mask.dtype}")
        if position_ids is None:
            position_ids = torch.arange(N, N + L, device=x.device)[None]
        c = self.config
        cos, sin = rope_tables(position_ids, int(c.head_dim * c.partial_rotary_factor), c.rope_theta, torch.float32)
        rope = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)  # float32 tables cast, as the hub
        kept: KVCache = []
        for i, layer in enumerate(self.model.layers):
            x, kv = layer(x, rope, attention_mask, cache[i] if cache else None)
            kept.append(kv)
        return LLaDA2Output(logits=self.lm_head(self.model.norm(x)), cache=kept if use_cache else None)


AutoConfig.register(MODEL_TYPE, LLaDA2Config, exist_ok=True)
AutoModel.register(LLaDA2Config, LLaDA2MoeModelLM, exist_ok=True)
