"""LLaDA-MoE (masked-diffusion mixture-of-experts LM) for transformers 5, weight-compatible with
inclusionAI/LLaDA-MoE-7B-A1B-Base and -Instruct.

The hub's remote code is written for transformers 4.x; this package carries its own model,
loaded with ``trust_remote_code=False``. Config field names are those of the hub's
``config.json`` and parameter names those of its checkpoint keys, so loading is strict.

Architecture (OLMoE-derived, fully bidirectional): token embedding ``embed_tokens``; per layer
RMSNorm -> q/k/v (optionally a per-head RMSNorm of q and k, ``qk_layernorm``) -> RoPE (over
``partial_rotary_factor`` of each head) -> non-causal SDPA -> ``o_proj`` (residual); RMSNorm ->
feed-forward (residual), where the feed-forward of a layer is either a dense SwiGLU
(``moe_layer_freq[i] == 0``) or a softmax top-k router over SwiGLU experts plus, when the config
sets ``shared_expert_intermediate_size``, a shared expert every token goes through; final RMSNorm
``norm``; untied head ``lm_head``.

The hub's checkpoints say ``model_type: "llada"`` (the dense model's) and
``architectures: ["LLaDAMoEModelLM"]``; this config class registers ``lladamoe`` (the name
ZHZisZZ/dllm gives it) so that it does not take LLaDA's place, and the family recognises both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

from lm_eval_temporal.families.llada_moe import MODEL_TYPE
from lm_eval_temporal.llada import RMSNorm, apply_rope, init_weights, rope_tables
from lm_eval_temporal.moe import SwiGLU, mix_experts, softmax_topk

__all__ = ["LLaDAMoEConfig", "LLaDAMoEModelLM"]


class LLaDAMoEConfig(PretrainedConfig):
    """Configuration with the field names of LLaDA-MoE's ``config.json``.

    Fields the reference model reads but ignores (``norm_topk_prob``, ``routed_scaling_factor``,
    ``moe_router_score_function``, ``router_num_group``, ``router_topk_group``,
    ``router_aux_loss_coef``, ``attention_dropout``) are kept as given; the model ignores them
    the same way, so that its logits equal the reference's.
    """

    # The size defaults only make the class constructible; a checkpoint's config.json sets them.
    model_type = MODEL_TYPE
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 157184,
        hidden_size: int = 2048,
        dense_intermediate_size: int = 8192,
        expert_intermediate_size: int = 1024,
        shared_expert_intermediate_size: int | None = None,
        num_hidden_layers: int = 16,
        num_attention_heads: int = 16,
        num_key_value_heads: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 8192,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 50000.0,
        partial_rotary_factor: float | None = 1.0,
        rope_scaling: dict | None = None,
        attention_bias: bool = False,
        attention_dropout: float = 0.0,
        clip_qkv: float | None = None,
        num_experts: int = 64,
        num_experts_per_tok: int = 8,
        norm_topk_prob: bool | None = None,
        qk_layernorm: bool | None = True,
        moe_layer_freq: list[int] | None = None,
        moe_router_enable_expert_bias: bool | None = None,
        moe_router_score_function: str | None = None,
        routed_scaling_factor: float = 1,
        router_num_group: int = -2,
        router_topk_group: int = -2,
        router_aux_loss_coef: float = 0.01,
        output_router_logits: bool = False,
        mask_token_id: int | None = None,
        pad_token_id: int | None = 1,
        bos_token_id: int | None = None,
        eos_token_id: int | None = 50279,
        tie_word_embeddings: bool = False,
        use_cache: bool = False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.dense_intermediate_size = dense_intermediate_size
        self.expert_intermediate_size = expert_intermediate_size
        self.shared_expert_intermediate_size = shared_expert_intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads if num_key_value_heads is not None else num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.partial_rotary_factor = partial_rotary_factor
        # Only the default RoPE is supported, so rope_scaling is checked, not kept (transformers 5
        # would turn the attribute into its rope_parameters, with a deprecation warning).
        kind = (rope_scaling or {}).get("rope_type", (rope_scaling or {}).get("type", "default"))
        if kind != "default":
            raise ValueError(f"rope_scaling of type {kind!r} is not supported (only the default RoPE)")
        self.attention_bias = attention_bias
        self.attention_dropout = attention_dropout
        self.clip_qkv = clip_qkv
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.norm_topk_prob = norm_topk_prob
        self.qk_layernorm = qk_layernorm
        # Every layer is a MoE layer unless the config says otherwise (the 7B-A1B's is all ones).
        self.moe_layer_freq = list(moe_layer_freq) if moe_layer_freq is not None else [1] * num_hidden_layers
        self.moe_router_enable_expert_bias = moe_router_enable_expert_bias
        self.moe_router_score_function = moe_router_score_function
        self.routed_scaling_factor = routed_scaling_factor
        self.router_num_group = router_num_group
        self.router_topk_group = router_topk_group
        self.router_aux_loss_coef = router_aux_loss_coef
        self.output_router_logits = output_router_logits
        self.mask_token_id = mask_token_id
        self.use_cache = use_cache
        kwargs.pop("model_type", None)  # the hub's "llada": the class's own name is written back
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
        self._check()

    def _check(self) -> None:
        """Refuse what the model cannot compute as the reference does, naming the field."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be divisible by "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        if len(self.moe_layer_freq) < self.num_hidden_layers:
            raise ValueError(f"moe_layer_freq has {len(self.moe_layer_freq)} entries; expected one per layer "
                             f"(num_hidden_layers={self.num_hidden_layers})")
        factor = 1.0 if self.partial_rotary_factor is None else self.partial_rotary_factor
        if not 0 < factor <= 1:
            raise ValueError(f"partial_rotary_factor={self.partial_rotary_factor}: expected a value in (0, 1]")
        if any(self.moe_layer_freq[: self.num_hidden_layers]) and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError(f"num_experts_per_tok ({self.num_experts_per_tok}) must be in 1..num_experts "
                             f"({self.num_experts})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        factor = 1.0 if self.partial_rotary_factor is None else self.partial_rotary_factor
        return int(self.head_dim * factor)


class SparseMoE(nn.Module):
    """Router ``gate`` + ``experts``; each token goes to its ``num_experts_per_tok`` best experts.

    The reference (ZHZisZZ/dllm's modeling_lladamoe, from OLMoE) never normalises the top-k
    weights whatever ``norm_topk_prob`` says, and keeps ``expert_bias`` (a buffer, present in the
    checkpoint when ``moe_router_enable_expert_bias``) in the weights; so does this model."""

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(config.hidden_size, config.expert_intermediate_size, ACT2FN[config.hidden_act]) for _ in range(config.num_experts))
        if config.moe_router_enable_expert_bias:
            self.register_buffer("expert_bias", torch.zeros(config.num_experts))
        else:
            self.expert_bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        flat = x.reshape(-1, D)
        weights, chosen = softmax_topk(self.gate(flat), self.top_k, self.expert_bias)
        return mix_experts(flat, self.experts, weights, chosen).view(B, L, D)


class LLaDAMoEAttention(nn.Module):
    def __init__(self, config: LLaDAMoEConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                        config.head_dim)
        self.clip_qkv = config.clip_qkv
        d, bias = config.hidden_size, config.attention_bias
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(d, d, bias=bias)
        if config.qk_layernorm:  # one norm over head_dim, shared by all heads
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, L, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, L, self.n_kv_heads, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        if self.clip_qkv is not None:
            q, k, v = (t.clamp(-self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False,
                                           enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, L, -1))


class LLaDAMoEDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: LLaDAMoEConfig, index: int):
        super().__init__()
        moe = config.moe_layer_freq[index] != 0
        self.self_attn = LLaDAMoEAttention(config)
        self.mlp = SparseMoE(config) if moe else SwiGLU(config.hidden_size, config.dense_intermediate_size, ACT2FN[config.hidden_act])
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if moe and config.shared_expert_intermediate_size is not None:
            self.shared_expert = SwiGLU(config.hidden_size, config.shared_expert_intermediate_size, ACT2FN[config.hidden_act])

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, attn_mask)
        h = self.post_attention_layernorm(x)
        f = self.mlp(h)
        if hasattr(self, "shared_expert"):
            f = f + self.shared_expert(h)
        return x + f


class LLaDAMoEModel(nn.Module):
    """Holds the layers so that parameter names read ``model.layers.*`` as in the checkpoint."""

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LLaDAMoEDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LLaDAMoEModelLM(PreTrainedModel):
    """LLaDA-MoE masked predictor: ``forward(input_ids, attention_mask=None).logits`` is [B, L, V]."""

    config_class = LLaDAMoEConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDAMoEDecoderLayer"]
    _supports_sdpa = True
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}  # tied only if tie_word_embeddings

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__(config)
        self.model = LLaDAMoEModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)
        if isinstance(module, SparseMoE) and module.expert_bias is not None:
            nn.init.zeros_(module.expert_bias)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> MaskedLMOutput:
        """Bidirectional forward pass.

        ``attention_mask`` is the usual padding mask [B, L] (1 = real token, 0 = padding):
        padded keys are hidden from every query, so a left-padded row gives the same logits at
        its real positions as the unpadded prompt would (RoPE is relative). Positions count
        from 0 at the first column, as the reference's. ``logits_to_keep=N`` (> 0) returns the
        logits of the last N positions only (the generation span, for the sampler)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, L, _ = x.shape
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != (B, L):
                raise ValueError(f"attention_mask must be a [batch, length] padding mask of shape {(B, L)}, "
                                 f"got {tuple(attention_mask.shape)}")
            if not bool(attention_mask.all()):
                mask = attention_mask.bool()[:, None, None, :]
        # The reference computes the tables in fp32 and rotates in the activations' dtype.
        cos, sin = rope_tables(torch.arange(L, device=x.device), self.config.rotary_dim, self.config.rope_theta,
                               torch.promote_types(x.dtype, torch.float32))
        rope = cos[None, None].to(x.dtype), sin[None, None].to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, rope, mask)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return MaskedLMOutput(logits=self.lm_head(self.model.norm(x)))


AutoConfig.register(MODEL_TYPE, LLaDAMoEConfig, exist_ok=True)
AutoModel.register(LLaDAMoEConfig, LLaDAMoEModelLM, exist_ok=True)
AutoModelForMaskedLM.register(LLaDAMoEConfig, LLaDAMoEModelLM, exist_ok=True)
