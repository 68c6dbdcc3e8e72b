"""How a sampler step gets its logits from the model (the forward strategies of ``sampler.generate``).

- :class:`FullCanvas`: the exact sampler's, the whole canvas every step, with classifier-free
  guidance (:func:`guided_logits`, the one CFG rule of the package) when ``cfg_scale > 0``;
- :class:`CachedPrefix`: ``prefix_cache``'s, the whole canvas at a block's first step, then the
  current block and everything after it only, attending to the cached keys/values of the prefix.

Both return the logits of the generation span only (``logits_to_keep`` where the model takes it:
:func:`forward_accepts`). Torch only.
"""

from __future__ import annotations

import inspect

import torch

from lm_eval_temporal.config import SamplerConfig

__all__ = ["FullCanvas", "CachedPrefix", "make_forward", "guided_logits", "forward_accepts"]


def forward_accepts(model: torch.nn.Module, name: str) -> bool:
    """Whether the model's forward (through any peft wrapper) takes the argument ``name``, e.g.
    ``logits_to_keep`` (logits of the last N positions only; BERT-style masked LMs have none)."""
    base = model
    while hasattr(base, "get_base_model"):
        nxt = base.get_base_model()
        if nxt is base:
            break
        base = nxt
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return False


def guided_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    attention_mask: torch.Tensor | None,
    *,
    prompt_length: int,
    cfg_scale: float,
    mask_id: int,
    prompt_real: torch.Tensor | None = None,
    **forward_kwargs,
) -> torch.Tensor:
    """``model(x).logits``, with classifier-free guidance when ``cfg_scale > 0``:
    ``uncond + (cfg_scale + 1) * (cond - uncond)``, where the unconditional copy has the real
    prompt tokens (``prompt_real`` [B, prompt_length], default all of them) masked and padding
    left as padding. Both copies run as one batch. The one CFG rule of the package (sampling
    and the Monte-Carlo log-likelihood both call it)."""
    if cfg_scale <= 0:
        return model(input_ids=x, attention_mask=attention_mask, **forward_kwargs).logits
    P = prompt_length
    un = x.clone()
    un[:, :P] = mask_id if prompt_real is None else torch.where(prompt_real, mask_id, x[:, :P])
    both = model(input_ids=torch.cat([x, un]),
                 attention_mask=None if attention_mask is None else torch.cat([attention_mask, attention_mask]),
                 **forward_kwargs).logits
    cond, uncond = both.chunk(2)
    return uncond + (cfg_scale + 1) * (cond - uncond)


class FullCanvas:
    """The forward strategy of the exact sampler: the whole canvas every step (with CFG when
    ``cfg_scale > 0``), logits of the generation span only."""

    def __init__(self, model: torch.nn.Module, cfg: SamplerConfig, prompt_length: int, mask_id: int):
        self.model, self.cfg_scale, self.mask_id = model, cfg.cfg_scale, mask_id
        self.P, self.G = prompt_length, cfg.gen_length
        self.keep = {"logits_to_keep": self.G} if forward_accepts(model, "logits_to_keep") else {}

    def restart(self, settled: int) -> None:
        """A new block starts after ``settled`` final generation positions (nothing to do)."""

    def keep_rows(self, kept: torch.Tensor) -> None:
        """Only the ``kept`` rows of the last call run on (nothing to do)."""

    def __call__(self, x: torch.Tensor, am: torch.Tensor | None, prompt_real: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(logits, off): the logits of generation positions ``off`` (here always 0) to the end."""
        return guided_logits(self.model, x, am, prompt_length=self.P, cfg_scale=self.cfg_scale, mask_id=self.mask_id,
                             prompt_real=prompt_real, **self.keep)[:, -self.G:], 0


class CachedPrefix(FullCanvas):
    """The forward strategy of ``prefix_cache``: at a block's first step the whole canvas runs
    once and the model keeps the keys/values of the prompt and the finished blocks
    (``forward(cache_prefix=N)``, see :mod:`lm_eval_temporal.llada`); the block's other steps run
    the current block and everything after it only, attending to that cache."""

    def __init__(self, model: torch.nn.Module, cfg: SamplerConfig, prompt_length: int, mask_id: int):
        if not forward_accepts(model, "prefix_cache"):
            raise ValueError("prefix_cache: this model's forward takes no prefix_cache (LLaDAModelLM does)")
        super().__init__(model, cfg, prompt_length, mask_id)
        self.settled = 0
        self.cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer: keys, values [rows, ...]

    def restart(self, settled: int) -> None:
        self.settled, self.cache = settled, None  # the finished blocks changed: cache them anew

    def keep_rows(self, kept: torch.Tensor) -> None:
        # Rows are independent, so the running rows' part of the cache is the cache they would
        # have alone; making it anew mid-block would give them keys/values of a later canvas.
        if self.cache is not None:
            self.cache = [(k[kept], v[kept]) for k, v in self.cache]

    def __call__(self, x: torch.Tensor, am: torch.Tensor | None, prompt_real: torch.Tensor) -> tuple[torch.Tensor, int]:
        if self.cache is not None:
            out = self.model(input_ids=x[:, self.P + self.settled:], attention_mask=am, prefix_cache=self.cache)
            return out.logits, self.settled
        out = self.model(input_ids=x, attention_mask=am, cache_prefix=self.P + self.settled, **self.keep)
        self.cache = out["prefix_cache"]
        return out.logits[:, -self.G:], 0


def make_forward(model: torch.nn.Module, cfg: SamplerConfig, prompt_length: int, mask_id: int) -> FullCanvas:
    return (CachedPrefix if cfg.prefix_cache else FullCanvas)(model, cfg, prompt_length, mask_id)
