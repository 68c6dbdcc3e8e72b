"""Dream (and DiffuCoder, Dream-Coder) for transformers 5, weight-compatible with
Dream-org/Dream-v0-Instruct-7B: the same ``config.json`` fields and ``model_type`` ("Dream"),
the same state-dict keys, loaded strictly with ``trust_remote_code=False``.

Architecture: Qwen2.5's decoder with full (bidirectional) attention. Token embedding
``model.embed_tokens``; per layer RMSNorm -> q/k/v (with bias) -> RoPE at the given position
ids -> non-causal SDPA -> ``o_proj`` (residual); RMSNorm -> SwiGLU
``down_proj(silu(gate_proj(x)) * up_proj(x))`` (residual); final RMSNorm ``model.norm``;
head ``lm_head``. The logits at position i predict the token at i + 1 (the sampler shifts
them); nothing here is shifted.

Why not transformers' own Qwen2 classes (same keys, same blocks): ``Qwen2Config`` saves
``rope_theta`` only inside ``rope_parameters`` (and adds ``layer_types``), so a saved
``config.json`` would no longer read as Dream's, and ``Qwen2Attention`` sets
``is_causal = True`` on every layer, so full attention would need the config switch and a
patch of every attention module. The computation here is the hub code's, dtype for dtype:
RMSNorm in float32, RoPE tables in float32 applied in the activations' dtype, SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

from lm_eval_temporal.llada import RMSNorm, apply_rope, init_weights, rope_tables
from lm_eval_temporal.moe import SwiGLU

__all__ = ["MODEL_TYPE", "DreamConfig", "DreamModel", "padding_inputs"]

MODEL_TYPE = "Dream"  # the hub checkpoints' model_type, capital D


class DreamConfig(PretrainedConfig):
    """The field names and defaults of Dream's ``configuration_dream.py`` (Dream-v0-7B sizes).
    Fields the model does not use (sliding window, dropout, ``auto_map``) are kept so a saved
    config reads as the hub's."""

    model_type = MODEL_TYPE
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 4096,
        intermediate_size: int = 22016,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = 32,
        hidden_act: str = "silu",
        max_position_embeddings: int = 32768,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        use_cache: bool = False,
        tie_word_embeddings: bool = False,
        rope_theta: float = 10000.0,
        rope_scaling: dict | None = None,
        use_sliding_window: bool = False,
        sliding_window: int | None = 4096,
        max_window_layers: int = 28,
        attention_dropout: float = 0.0,
        mask_token_id: int | None = 151666,
        pad_token_id: int | None = 151643,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta  # (rope_scaling is transformers 5's alias of rope_parameters: not set here)
        self.use_sliding_window = use_sliding_window
        self.sliding_window = sliding_window if use_sliding_window else None
        self.max_window_layers = max_window_layers
        self.attention_dropout = attention_dropout
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.mask_token_id = mask_token_id
        self.pad_token_id = pad_token_id
        # What this implementation does not carry is refused, not silently computed otherwise.
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                             f"({num_attention_heads})")
        if num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({num_attention_heads}) must be divisible by "
                             f"num_key_value_heads ({self.num_key_value_heads})")
        if hidden_act != "silu":
            raise ValueError(f"hidden_act={hidden_act!r}: this Dream implementation has SwiGLU (silu) only")
        scaling = rope_scaling or getattr(self, "rope_parameters", None) or {}
        if scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise ValueError(f"rope_scaling={scaling!r}: this Dream implementation has the default RoPE only "
                             "(the released Dream / DiffuCoder checkpoints have rope_scaling null)")


def padding_inputs(attention_mask: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(position ids, 4-D boolean attention mask) of a [B, L] padding mask, as Dream's
    ``diffusion_generate`` builds them: with any padding, positions count real tokens from 0
    (padding gets position 1) and a query and a key see each other only if both are real;
    without padding (or no mask), (None, None): positions 0..L-1 and full attention.

    One addition: a padded position also sees itself. The hub code leaves its row all
    masked, which some SDPA kernels turn into NaN that the next layer's attention carries
    into every row (0 x NaN); a padded position is never read, so every real position gets
    exactly the hub code's result."""
    if attention_mask is None or bool(attention_mask.bool().all()):
        return None, None
    real = attention_mask.bool()
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(~real, 1)
    pairs = real[:, None, :, None] & real[:, None, None, :]
    pairs = pairs | torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
    return positions, pairs


class DreamAttention(nn.Module):
    def __init__(self, config: DreamConfig):
        super().__init__()
        d, h, kv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
        self.n_heads, self.n_kv_heads, self.head_dim = h, kv, d // h
        self.q_proj = nn.Linear(d, h * self.head_dim, bias=True)
        self.k_proj = nn.Linear(d, kv * self.head_dim, bias=True)
        self.v_proj = nn.Linear(d, kv * self.head_dim, bias=True)
        self.o_proj = nn.Linear(h * self.head_dim, d, bias=False)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # the hub code repeats the key/value heads (rather than SDPA's enable_gqa) so the same
        # kernels run on the same shapes
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
        return self.o_proj(y.transpose(1, 2).reshape(B, L, -1))


class DreamDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: DreamConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DreamAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamBaseModel(nn.Module):
    """Holds the parameters named ``model.*`` in the checkpoint."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class DreamModel(PreTrainedModel):
    """Dream's denoiser: ``forward(input_ids, attention_mask=None, position_ids=None).logits``
    is [B, L, V], unshifted. The class name is the hub's ``architectures`` entry."""

    config_class = DreamConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module, self.config.initializer_range)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module | None:
        return None if self.config.tie_word_embeddings else self.lm_head

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> MaskedLMOutput:
        """``attention_mask``: a [B, L] padding mask (1 = real token; turned into the hub
        code's mask and position ids by :func:`padding_inputs`) or an already built 4-D
        boolean mask [B, 1, L, L] used as given (then pass ``position_ids`` too).
        ``logits_to_keep=N`` (> 0): the logits of the last N positions only."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, L, _ = x.shape
        mask = attention_mask
        if mask is not None and mask.dim() == 2:
            if mask.shape != (B, L):
                raise ValueError(f"attention_mask: expected a [batch, length] padding mask of shape {(B, L)}, "
                                 f"got {tuple(mask.shape)}")
            found, mask = padding_inputs(mask)
            position_ids = found if position_ids is None else position_ids
        elif mask is not None and (mask.dim() != 4 or mask.dtype != torch.bool):
            raise ValueError(f"attention_mask: expected [B, L] or a 4-D boolean mask, got shape "
                             f"{tuple(mask.shape)}, dtype {mask.dtype}")
        if position_ids is None:
            position_ids = torch.arange(L, device=x.device)[None]
        cos, sin = rope_tables(position_ids, self.config.hidden_size // self.config.num_attention_heads,
                               self.config.rope_theta, torch.float32)  # float32 tables, as the hub code
        rope = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)
        for layer in self.model.layers:
            x = layer(x, rope, mask)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.config.tie_word_embeddings else self.lm_head.weight
        return MaskedLMOutput(logits=F.linear(x, head))


AutoConfig.register(MODEL_TYPE, DreamConfig, exist_ok=True)
AutoModel.register(DreamConfig, DreamModel, exist_ok=True)
