"""LLaDA (masked-diffusion LM) for transformers 5, weight-compatible with GSAI-ML/LLaDA-8B-Instruct.

The hub's remote code targets transformers 4.38 and never calls ``post_init`` (it fails on
5.x with "no attribute all_tied_weights_keys"), so this package carries its own model,
registered for ``model_type="llada"`` and loaded with ``trust_remote_code=False``.

Architecture (OLMo-derived, fully bidirectional): token embedding ``wte``; per block RMSNorm ->
q/k/v -> RoPE -> non-causal SDPA -> ``attn_out`` (residual); RMSNorm -> SwiGLU
``ff_out(silu(ff_proj(x)) * up_proj(x))`` (residual); final RMSNorm ``ln_f``; untied head
``ff_out``. Parameter names mirror the checkpoint keys exactly, so loading is strict.

Bidirectional attention has no exact KV cache (every position sees the whole changing canvas);
``forward`` offers the approximate, opt-in prefix cache of the sampler's ``prefix_cache`` option.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

PrefixCache = list  # per block: (keys, values) of the first positions, [B, kv_heads, N, head_dim] each

__all__ = ["LLaDAConfig", "LLaDAModelLM", "RMSNorm", "rope_tables", "apply_rope"]


class LLaDAConfig(PretrainedConfig):
    """Configuration with the field names of LLaDA's ``config.json``.

    Unknown fields of a real config (OLMo leftovers such as ``block_type``, ``init_fn`` or
    ``auto_map``) are kept as attributes and otherwise ignored.
    """

    model_type = "llada"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int = 12288,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        max_sequence_length: int = 4096,
        rope: bool = True,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        weight_tying: bool = False,
        include_bias: bool = False,
        mask_token_id: int | None = 126336,
        eos_token_id: int | None = 126081,
        pad_token_id: int | None = 126081,
        bos_token_id: int | None = 126080,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads if n_kv_heads is not None else n_heads
        self.n_layers = n_layers
        self.mlp_hidden_size = mlp_hidden_size
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size if embedding_size is not None else vocab_size
        self.max_sequence_length = max_sequence_length
        self.rope = rope
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.weight_tying = weight_tying
        self.include_bias = include_bias
        self.mask_token_id = mask_token_id
        self.initializer_range = initializer_range
        # tie_word_embeddings is transformers' name for weight_tying.
        kwargs.setdefault("tie_word_embeddings", weight_tying)
        super().__init__(
            eos_token_id=eos_token_id, pad_token_id=pad_token_id, bos_token_id=bos_token_id, **kwargs
        )
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")

    # transformers utilities (device_map, peft, generation helpers) read these names.
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def max_position_embeddings(self) -> int:
        return self.max_sequence_length


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in at least fp32 (as OLMo does) so bf16 runs match fp32 closely; fp64
        # stays fp64 so float64 test models are exact to the last bits.
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_tables(positions: torch.Tensor, dim: int, theta: float,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of the rotary embedding at integer ``positions`` ([..., L] -> [..., L, dim]) over
    ``dim`` channels (the head dimension, or its rotated part), computed in ``dtype``. The one
    RoPE of every family (LLaDA, LLaDA-MoE, Dream)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=dtype) / dim))
    freqs = positions.to(dtype)[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [B, heads, L, head_dim] by (cos, sin), computing in ``cos.dtype`` and
    returning ``x.dtype``; when the tables cover fewer channels than head_dim (partial
    rotary), only the first ``cos.shape[-1]`` channels rotate and the rest pass through."""
    h = x.to(cos.dtype)
    rot = cos.shape[-1]
    if rot == h.shape[-1]:
        return (h * cos + _rotate_half(h) * sin).to(x.dtype)
    h, rest = h[..., :rot], h[..., rot:]
    return torch.cat((h * cos + _rotate_half(h) * sin, rest), dim=-1).to(x.dtype)


def init_weights(module: nn.Module, std: float) -> None:
    """The random initialisation of every carried model (LLaDA, LLaDA-MoE, Dream): normal(0, std)
    linear and embedding weights, zero biases, unit RMSNorm scales."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, RMSNorm):
        nn.init.ones_(module.weight)


class LLaDABlock(GradientCheckpointingLayer):
    def __init__(self, config: LLaDAConfig):
        super().__init__()
        d, h, kv = config.d_model, config.n_heads, config.n_kv_heads
        self.n_heads, self.n_kv_heads, self.head_dim = h, kv, d // h
        bias = config.include_bias
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=bias)
        self.k_proj = nn.Linear(d, kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, kv * self.head_dim, bias=bias)
        self.attn_out = nn.Linear(d, d, bias=bias)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=bias)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=bias)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        attn_mask: torch.Tensor | None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        keep: tuple[PrefixCache, int] | None = None,
    ) -> torch.Tensor:
        """``past``: cached keys/values of the positions before ``x`` (they are attended to, not
        recomputed); ``keep=(cache, n)``: append this block's keys/values of the first n positions."""
        B, L, _ = x.shape
        a = self.attn_norm(x)
        q = self.q_proj(a).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(a).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(a).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if rope is not None:
            # RoPE in (at least) fp32: positions up to 4096 with theta 5e5 lose precision in bf16.
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if keep is not None:
            keep[0].append((k[:, :, : keep[1]], v[:, :, : keep[1]]))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=False, enable_gqa=self.n_kv_heads != self.n_heads
        )
        x = x + self.attn_out(y.transpose(1, 2).reshape(B, L, -1))
        f = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(f)) * self.up_proj(f))


class LLaDABackbone(nn.Module):
    """Holds ``transformer`` (a ModuleDict) so parameter names read ``model.transformer.*``."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        modules = {
            "wte": nn.Embedding(config.embedding_size, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=config.include_bias)
        self.transformer = nn.ModuleDict(modules)


class LLaDAModelLM(PreTrainedModel):
    """LLaDA masked predictor: ``forward(input_ids, attention_mask=None).logits`` is [B, L, V]."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDABackbone(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.transformer["wte"]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.transformer["wte"] = value

    def get_output_embeddings(self) -> nn.Module | None:
        return None if self.config.weight_tying else self.model.transformer["ff_out"]

    def _rope(
        self, length: int, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rope_tables(torch.arange(length, device=device), self.config.d_model // self.config.n_heads,
                               self.config.rope_theta, dtype)
        return cos[None, None], sin[None, None]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        cache_prefix: int = 0,
        prefix_cache: PrefixCache | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        """Bidirectional forward pass.

        Prefix caching (approximate; the sampler's ``prefix_cache`` option): ``cache_prefix=N``
        also returns ``prefix_cache``, every block's keys/values of the first N positions;
        ``prefix_cache=cache`` then runs ``input_ids`` as the positions after those N only,
        attending to the cached keys/values (``attention_mask``, if given, covers all N + L
        positions). The cached prefix saw the canvas of the call that made it, so later calls
        are exact only while the rest of the canvas is unchanged. Rows are independent, so the
        cache of some rows of the batch is every layer's keys/values indexed by those rows.

        ``logits_to_keep=N`` (> 0) returns the logits of the last N positions only (the
        generation span, for the sampler): at LLaDA-8B's vocabulary the prompt's logits would
        otherwise be most of a step's activation memory.

        ``attention_mask`` is the usual padding mask [B, L] (1 = real token, 0 = padding):
        padded keys are hidden from every query, so a left-padded row gives the same logits
        at its real positions as the unpadded prompt would (RoPE is relative).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        t = self.model.transformer
        x = t["wte"](input_ids) if inputs_embeds is None else inputs_embeds
        B, L, _ = x.shape
        N = prefix_cache[0][0].shape[2] if prefix_cache else 0  # cached positions before x
        if N + L > self.config.max_sequence_length:
            raise ValueError(
                f"sequence length {N + L} exceeds max_sequence_length={self.config.max_sequence_length}"
            )
        mask = None
        if attention_mask is not None:
            if attention_mask.dim() != 2 or attention_mask.shape != (B, N + L):
                raise ValueError(
                    f"attention_mask must be a [batch, length] padding mask of shape {(B, N + L)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            if not bool(attention_mask.all()):
                mask = attention_mask.bool()[:, None, None, :]
        rope = None
        if self.config.rope:
            cos, sin = self._rope(N + L, x.device, torch.promote_types(x.dtype, torch.float32))
            rope = cos[:, :, N:], sin[:, :, N:]
        cache: PrefixCache | None = [] if cache_prefix else None
        for i, block in enumerate(t["blocks"]):
            x = block(x, rope, mask, past=prefix_cache[i] if prefix_cache else None,
                      keep=(cache, cache_prefix) if cache is not None else None)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        x = t["ln_f"](x)
        head = t["wte"].weight if self.config.weight_tying else t["ff_out"].weight
        logits = F.linear(x, head)
        out = MaskedLMOutput(logits=logits)
        if cache is not None:
            out["prefix_cache"] = cache
        return out


AutoConfig.register("llada", LLaDAConfig, exist_ok=True)
AutoModel.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
AutoModelForMaskedLM.register(LLaDAConfig, LLaDAModelLM, exist_ok=True)
