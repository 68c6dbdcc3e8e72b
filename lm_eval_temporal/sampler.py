"""Masked-diffusion sampling (LLaDA's semi-autoregressive block schedule) with per-step capture.

Torch only: this module knows nothing about lm-eval, tokenizers or answers. The algorithm
(docs/algorithm.md, "Sampling"), step by step:

1. The canvas is the (left-padded) prompt followed by ``gen_length`` mask tokens.
2. Blocks of ``block_length`` are denoised left to right, ``steps / num_blocks`` steps each;
   a block's masked count is spread over its steps as evenly as possible (the first
   ``count % steps_per_block`` steps commit one extra token). Counts are per row.
3. Each step runs the model on the whole canvas (with classifier-free guidance: also on a copy
   whose real prompt tokens are masked, ``uncond + (cfg_scale + 1) * (cond - uncond)``).
4. ``x0`` = argmax of the logits, or float64 Gumbel-max ``exp(logits) / (-log U) ** temperature``.
   The mask token's logit is -inf (so is EOS's with ``suppress_eos``): a committed position
   always holds a real token, so every step commits exactly its quota of new positions.
5. Confidence is ``softmax(logits)[x0]`` (low_confidence, computed for the current block
   only) or ``U(0, 1)`` (random); positions outside the current block and positions already
   committed never compete.
6. The most confident positions (ties: the leftmost) are committed.
7. With ``capture=True`` the ``x0`` of every step over the generation span is kept.

Optional, approximate (off by default): ``parallel_threshold`` (Fast-dLLM's confidence-aware
parallel decoding) replaces step 2's quota: each row commits every masked position of its
current block whose confidence reaches the threshold (at least one), moves to the next block
when one is done, and stops when nothing is masked, so rows take data-dependent numbers of
steps (``steps_run``) and ``steps`` is not used.

Only the generation span is ever written: the prompt, including any mask token inside it,
is context. Each row of a left-padded batch gives the tokens the prompt gives alone (the
model sees a padding mask; random draws cover the generation span only, so with one
``torch.Generator`` per row even sampled rows do not depend on their batch). That holds for
models whose attention sees relative positions only (LLaDA's RoPE); with absolute position
embeddings (BERT) left padding shifts every position, so such models see batch effects.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lm_eval_temporal.config import SamplerConfig

__all__ = ["SamplerConfig", "GenerationOutput", "generate", "guided_logits", "forward_accepts"]

StepCallback = Callable[[int, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


@dataclass
class GenerationOutput:
    """What :func:`generate` returns.

    - ``sequences``: LongTensor [B, P + G], prompt (as given, padding included) + generation.
    - ``trajectory``: int32 CPU tensor [B, steps, G] (with ``parallel_threshold``: as many
      steps as the longest row ran; shorter rows repeat their last), the ``x0`` of every step over the
      generation span (committed tokens plus the current guess for every masked position);
      ``trajectory[:, -1]`` equals the generated tokens. None unless ``capture=True``.
    - ``commit_step``: long CPU tensor [B, G], the global step at which each generated position
      was committed (with the trajectory, the canvas every step saw: what a likelihood of the
      sampled trajectory needs). None unless ``capture=True``.
    - ``steps_run``: LongTensor [B], the forward steps each row used (``steps`` unless a
      ``step_callback`` stopped it early).
    """

    sequences: torch.Tensor
    trajectory: torch.Tensor | None
    steps_run: torch.Tensor
    commit_step: torch.Tensor | None = None


def _config_attr(model: torch.nn.Module, name: str):
    return getattr(getattr(model, "config", None), name, None)


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


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _check_inputs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    cfg: SamplerConfig,
    mask_id: int | None,
    eos_id: int | Sequence[int] | None,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> tuple[int, list[int]]:
    """Validate everything generate() needs beyond the config; return (mask_id, eos ids)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise ValueError("input_ids: expected a 2-D integer tensor [batch, prompt_length]")
    if input_ids.dtype.is_floating_point or input_ids.dtype.is_complex or input_ids.dtype == torch.bool:
        raise ValueError(f"input_ids: expected integer token ids, got dtype {input_ids.dtype}")
    B, P = input_ids.shape
    if B == 0 or P == 0:
        raise ValueError(f"input_ids: empty prompt (shape {tuple(input_ids.shape)}); every row needs >= 1 token")
    if mask_id is None:
        mask_id = _config_attr(model, "mask_token_id")
    if mask_id is None:
        raise ValueError(
            "mask_id: the model config has no mask_token_id; pass mask_id= (the tokenizer's mask token id)"
        )
    mask_id = int(mask_id)
    pad = _config_attr(model, "pad_token_id")
    if pad is not None and not isinstance(pad, (list, tuple)) and int(pad) == mask_id:
        raise ValueError(
            f"mask_id={mask_id} equals the model's pad_token_id: padding would be read as masked "
            "positions; use a model/tokenizer whose pad token differs from the mask token"
        )
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (B, P):
            raise ValueError(
                f"attention_mask: expected shape {(B, P)} like input_ids, got {tuple(attention_mask.shape)}"
            )
        am = attention_mask.bool()
        if not bool(am.any(dim=1).all()):
            raise ValueError("input_ids/attention_mask: a row has no real token (empty prompt)")
        # Left padding only: a real token may never be followed by padding, else the
        # generation would not sit right after the prompt.
        if bool((am[:, :-1] & ~am[:, 1:]).any()):
            raise ValueError("attention_mask: expected left padding (zeros, then ones) in every row")
        if bool(((input_ids == mask_id) & ~am).any()):
            raise ValueError(
                f"input_ids: padding positions hold the mask id {mask_id}; pad with another token (e.g. EOS)"
            )
    for limit in ("max_sequence_length", "max_position_embeddings"):
        max_len = _config_attr(model, limit)
        if max_len is not None and P + cfg.gen_length > int(max_len):
            raise ValueError(
                f"gen_length={cfg.gen_length}: prompt length {P} + gen_length = {P + cfg.gen_length} "
                f"exceeds the model's {limit}={max_len}"
            )
    eos = _ids(eos_id if eos_id is not None else _config_attr(model, "eos_token_id"))
    if cfg.suppress_eos and not eos:
        raise ValueError("suppress_eos=True: no eos_id given and the model config has no eos_token_id")
    if isinstance(generator, (list, tuple)) and len(generator) != B:
        raise ValueError(f"generator: expected one torch.Generator or a list of {B} (one per row), got {len(generator)}")
    return mask_id, eos


def _uniform(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    rows: torch.Tensor | None,
) -> torch.Tensor:
    """U(0, 1) of ``shape`` whose leading dim is the active rows; per-row generators each
    draw their own row, so a row's numbers never depend on the rest of the batch."""
    if not isinstance(generator, (list, tuple)):
        return torch.rand(shape, dtype=dtype, device=device, generator=generator)
    gens = generator if rows is None else [generator[i] for i in rows.tolist()]
    return torch.stack([torch.rand(shape[1:], dtype=dtype, device=device, generator=g) for g in gens])


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


def _config(config: SamplerConfig | None, settings: dict) -> SamplerConfig:
    """The call's SamplerConfig: ``config``, or one built from the keyword form, never both."""
    given = {k: v for k, v in settings.items() if v is not None}
    if config is not None:
        if given:
            raise ValueError(f"generate: pass either config= or the keyword settings, not both (got {', '.join(given)})")
        if not isinstance(config, SamplerConfig):
            raise ValueError(f"config: expected a SamplerConfig, got {type(config).__name__}")
        return config.validate()
    missing = [k for k in ("gen_length", "steps", "block_length") if k not in given]
    if missing:
        raise ValueError(f"generate: missing {', '.join(missing)} (or pass config=SamplerConfig(...))")
    return SamplerConfig(**given).validate()


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    config: SamplerConfig | None = None,
    gen_length: int | None = None,
    steps: int | None = None,
    block_length: int | None = None,
    temperature: float | None = None,
    cfg_scale: float | None = None,
    remasking: str | None = None,
    suppress_eos: bool | None = None,
    parallel_threshold: float | None = None,
    prefix_cache: bool | None = None,
    mask_id: int | None = None,
    eos_id: int | Sequence[int] | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    capture: bool = False,
    step_callback: StepCallback | None = None,
    callback_gap: bool = False,
) -> GenerationOutput:
    """Denoise ``gen_length`` tokens after each (left-padded) prompt; see the module docstring.

    The settings come as one ``config=SamplerConfig(...)`` or as keywords (``gen_length``,
    ``steps``, ``block_length`` required; ``temperature`` 0, ``cfg_scale`` 0, ``remasking``
    low_confidence and ``suppress_eos`` False by default), not both.
    ``model(input_ids=..., attention_mask=...)`` must return ``.logits`` [B, L, V]. ``mask_id``
    defaults to ``model.config.mask_token_id``; ``eos_id`` (used by ``suppress_eos``, which sets
    the EOS logits to -inf) to ``model.config.eos_token_id``. ``generator`` drives the Gumbel
    noise and random remasking: one ``torch.Generator`` (on the model's device) for the batch,
    or a list with one per row. ``capture=True`` fills ``trajectory``; it never changes the
    tokens. ``step_callback(step, x0_gen [B, G], still_masked [B, G])`` runs after every step;
    rows for which it returns True commit their current ``x0`` and stop (None/False: no effect).
    With ``callback_gap=True`` it is called with a fourth argument, ``gap`` [B, G] float32: the
    top-1 minus top-2 logit of every generation position at this step (after the mask/EOS
    logits are removed; equal to log(p1 / p2)), NaN in rows that already stopped.
    """
    settings = dict(gen_length=gen_length, steps=steps, block_length=block_length, temperature=temperature,
                    cfg_scale=cfg_scale, remasking=remasking, suppress_eos=suppress_eos,
                    parallel_threshold=parallel_threshold, prefix_cache=prefix_cache)
    cfg = _config(config, settings)
    mask_id, eos = _check_inputs(model, input_ids, attention_mask, cfg, mask_id, eos_id, generator)
    device = input_ids.device
    B, P = input_ids.shape
    G, spb, block_length = cfg.gen_length, cfg.steps_per_block, cfg.block_length
    tau = cfg.parallel_threshold
    steps = cfg.max_steps

    x = torch.cat([input_ids.long(), input_ids.new_full((B, G), mask_id, dtype=torch.long)], dim=1)
    am = None
    prompt_real = torch.ones(B, P, dtype=torch.bool, device=device)
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        prompt_real = attention_mask.bool()
        am = torch.cat([attention_mask.long(), attention_mask.new_ones((B, G), dtype=torch.long)], dim=1)

    positions = torch.arange(G, device=device)
    traj = torch.empty((B, steps, G), dtype=torch.int32, device=device) if capture else None
    commit_step = torch.full((B, G), -1, dtype=torch.long, device=device) if capture else None
    steps_run = torch.full((B,), steps, dtype=torch.long, device=device)
    # Early stopping state, only touched when a callback exists: `rows` indexes the rows still
    # running (None = all of them, the common path, which then indexes nothing).
    active = torch.ones(B, dtype=torch.bool, device=device)
    rows: torch.Tensor | None = None
    stopped_any = False
    x0_all = x[:, P:]  # the latest x0 of every row (a stopped row keeps its last); set at step 0

    keep = {"logits_to_keep": G} if forward_accepts(model, "logits_to_keep") else {}

    if cfg.prefix_cache and not forward_accepts(model, "prefix_cache"):
        raise ValueError("prefix_cache: this model's forward takes no prefix_cache (LLaDAModelLM does)")
    cache = None  # keys/values of the prompt and the finished blocks, made at each block's first step

    def forward(xa: torch.Tensor, ama: torch.Tensor | None, real: torch.Tensor, start: int) -> tuple[torch.Tensor, int]:
        """(logits, off): the logits of generation positions ``off`` to ``G``; ``off`` is the
        current block's ``start`` when its prefix is cached, else 0."""
        nonlocal cache
        if cfg.prefix_cache and cache is not None:
            return _forbid(model(input_ids=xa[:, P + start:], attention_mask=ama, prefix_cache=cache).logits), start
        if cfg.prefix_cache:
            out = model(input_ids=xa, attention_mask=ama, cache_prefix=P + start, **keep)
            cache = out["prefix_cache"]
            return _forbid(out.logits[:, -G:]), 0
        return _forbid(guided_logits(model, xa, ama, prompt_length=P, cfg_scale=cfg.cfg_scale, mask_id=mask_id,
                                     prompt_real=real, **keep)[:, -G:]), 0

    def _forbid(logits: torch.Tensor) -> torch.Tensor:
        # The mask token is never a prediction: a committed position must hold a real token
        # (LLaDA gives it no mass anyway; a committed mask would silently re-open the position).
        logits[..., mask_id] = -torch.inf
        if cfg.suppress_eos:
            logits[..., eos] = -torch.inf
        return logits

    cols = torch.arange(block_length, device=device)

    def block_confidence(logits: torch.Tensor, x0: torch.Tensor, start: int | torch.Tensor, off: int = 0) -> torch.Tensor:
        """softmax(logits)[x0] over the block at ``start`` (one for all rows, or one per row),
        -inf elsewhere. A softmax of those rows alone is, bit for bit, the one over the whole
        span (rows are independent), for a fraction of the float32 [B, positions, V] it would
        materialise (exp(logit - logsumexp) is cheaper still but rounds differently, and a
        flipped near-tie changes tokens)."""
        dt = torch.promote_types(logits.dtype, torch.float32)
        if isinstance(start, int):  # (logits begin at generation position ``off``)
            span, tok = logits[:, start - off : start - off + block_length], x0[:, start : start + block_length]
        else:
            idx = start[:, None] + cols
            span, tok = logits.gather(1, idx[:, :, None].expand(-1, -1, logits.shape[-1])), x0.gather(1, idx)
        p = torch.softmax(span.to(dt), dim=-1).gather(-1, tok[:, :, None]).squeeze(-1)
        conf = torch.full(x0.shape, -torch.inf, dtype=p.dtype, device=device)
        if isinstance(start, int):
            conf[:, start : start + block_length] = p
        else:
            conf.scatter_(1, idx, p)
        return conf

    for step in range(steps):
        xa = x if rows is None else x[rows]
        ama = am if (am is None or rows is None) else am[rows]
        real = prompt_real if rows is None else prompt_real[rows]
        if tau is None and step % spb == 0:  # the exact schedule: each block's quota, set at its start
            start = step // spb * block_length
            block_masked = (x[:, P + start : P + start + block_length] == mask_id).sum(dim=1)
            base, extra = block_masked // spb, block_masked % spb
            cache = None  # the finished blocks changed: the prefix is cached anew
        logits, off = forward(xa, ama, real, start if tau is None else 0)
        if cfg.temperature > 0:
            lg = logits.to(torch.float64)
            u = _uniform(tuple(lg.shape), torch.float64, device, generator, rows)
            x0 = (lg.exp() / (-torch.log(u)) ** cfg.temperature).argmax(dim=-1)
        else:
            x0 = logits.argmax(dim=-1)
        xg = xa[:, P:]
        if off:  # the cached prefix's positions are committed: they predict themselves
            x0 = torch.cat([xg[:, :off], x0], dim=1)
        masked = xg == mask_id
        x0 = torch.where(masked, x0, xg)
        if tau is None:
            # Every row is in the same block; only masked positions up to its end compete.
            candidate = masked & (positions < start + block_length)
        else:
            # Each row in its own current block: the one holding its first masked position.
            start = masked.int().argmax(dim=1) // block_length * block_length
            candidate = masked & (positions >= start[:, None]) & (positions < start[:, None] + block_length)
        if cfg.remasking == "low_confidence":
            conf = block_confidence(logits, x0, start, off)
        else:
            conf = _uniform((x0.shape[0], G), torch.float32, device, generator, rows)
        conf = conf.masked_fill(~candidate, -torch.inf)
        if tau is None:
            k = base + (step % spb < extra).long()
            if rows is not None:
                k = k[rows]
        else:  # every position at or above the threshold, at least one
            k = torch.minimum((conf >= tau).sum(dim=1).clamp(min=1), candidate.sum(dim=1))
        # Per-row top-k with per-row k: stable descending sort (ties: leftmost first), keep rank < k.
        order = conf.argsort(dim=1, descending=True, stable=True)
        commit = torch.zeros_like(candidate).scatter_(1, order, positions[None, :] < k[:, None])
        new_gen = torch.where(commit, x0, xg)
        if rows is None:
            x[:, P:] = new_gen
            x0_all = x0
            if traj is not None:
                traj[:, step] = x0
                commit_step = torch.where(commit, step, commit_step)
        else:
            x[rows, P:] = new_gen
            x0_all[rows] = x0
            if traj is not None:
                traj[rows, step] = x0.to(torch.int32)
                commit_step[rows] = torch.where(commit, step, commit_step[rows])
        stop = None
        if step_callback is not None:
            if callback_gap:
                top2 = logits.topk(2, dim=-1).values.float()
                gap_a = top2[..., 0] - top2[..., 1]
                if off:
                    gap_a = torch.cat([gap_a.new_full((gap_a.shape[0], off), torch.nan), gap_a], dim=1)
                if rows is None:
                    gap = gap_a
                else:
                    gap = torch.full((B, G), torch.nan, dtype=torch.float32, device=device)
                    gap[rows] = gap_a
                stop = step_callback(step, x0_all, x[:, P:] == mask_id, gap)
            else:
                stop = step_callback(step, x0_all, x[:, P:] == mask_id)
        if tau is not None:  # with parallel decoding a row is done when nothing is masked
            done = ~(x[:, P:] == mask_id).any(dim=1)
            stop = done if stop is None else torch.as_tensor(stop, device=device).bool() | done
        if stop is None:
            continue
        stop = torch.as_tensor(stop, device=device).bool() & active
        if not bool(stop.any()):
            continue
        # Stopped rows take the current prediction for every position still masked.
        still = (x[:, P:] == mask_id) & stop[:, None]
        x[:, P:] = torch.where(still, x0_all, x[:, P:])
        steps_run = torch.where(stop, step + 1, steps_run)
        if commit_step is not None:
            commit_step = torch.where(still, step, commit_step)
        active &= ~stop
        stopped_any = True
        cache = None  # it holds the rows that were running
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            break

    trajectory = None
    if traj is not None:
        if tau is not None:  # as many captures as the longest row ran
            steps = int(steps_run.max())
            traj = traj[:, :steps]
        if stopped_any:
            # Steps after a row stopped repeat its last x0.
            last = torch.minimum(torch.arange(steps, device=device)[None, :], steps_run[:, None] - 1)
            traj = traj.gather(1, last[:, :, None].expand(B, steps, G))
        trajectory = traj.cpu()
    return GenerationOutput(sequences=x, trajectory=trajectory, steps_run=steps_run,
                            commit_step=None if commit_step is None else commit_step.cpu())
