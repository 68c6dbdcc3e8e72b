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
steps (``steps_run``) and ``steps`` is not used. ``prefix_cache`` (Fast-dLLM's prefix KV
cache) replaces step 3 after a block's first step: the block's other steps run the current
block and everything after it only, attending to keys/values of the prompt and the finished
blocks cached at the block's first step.

:func:`generate` is one loop around two parts: a schedule policy (:mod:`lm_eval_temporal.schedule`:
which positions are candidates and how many each row commits, the fixed quota of steps 2 and
6 or the confidence threshold) and a forward strategy (:mod:`lm_eval_temporal.forward`: the
full canvas of step 3 or the cached prefix). Rows that stop early leave the batch; the rest run on.

Only the generation span is ever written: the prompt, including any mask token inside it,
is context. Each row of a left-padded batch gives the tokens the prompt gives alone (the
model sees a padding mask; random draws cover the generation span only, so with one
``torch.Generator`` per row even sampled rows do not depend on their batch). That holds for
models whose attention sees relative positions only (LLaDA's RoPE); with absolute position
embeddings (BERT) left padding shifts every position, so such models see batch effects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lm_eval_temporal.config import SamplerConfig
from lm_eval_temporal.forward import forward_accepts, guided_logits, make_forward
from lm_eval_temporal.schedule import QuotaSchedule, ThresholdSchedule, block_confidence, make_schedule, most_confident

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
    - ``forward_passes``: LongTensor [B], the model forward passes each row used (a step with
      classifier-free guidance runs two): the denominator of tokens per forward pass.
    """

    sequences: torch.Tensor
    trajectory: torch.Tensor | None
    steps_run: torch.Tensor
    commit_step: torch.Tensor | None = None
    forward_passes: torch.Tensor | None = None


def _config_attr(model: torch.nn.Module, name: str):
    return getattr(getattr(model, "config", None), name, None)


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


class _Rows:
    """The rows still running: all of them (``index`` None, the common path, which then indexes
    nothing) or the batch rows ``index``."""

    def __init__(self, batch: int, device: torch.device):
        self.active = torch.ones(batch, dtype=torch.bool, device=device)
        self.index: torch.Tensor | None = None

    def take(self, t: torch.Tensor | None) -> torch.Tensor | None:
        return t if (t is None or self.index is None) else t[self.index]

    def write(self, full: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """Set the running rows of ``full`` (in place) to ``part``; return ``full``."""
        if self.index is None:
            full.copy_(part)
        else:
            full[self.index] = part.to(full.dtype)
        return full

    def merge(self, full: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        """``full`` with the running rows set to ``part``: ``part`` itself when all rows run."""
        return part if self.index is None else self.write(full, part)

    def spread(self, part: torch.Tensor, fill: float) -> torch.Tensor:
        """``part`` of the running rows as a batch tensor, ``fill`` in rows that stopped."""
        if self.index is None:
            return part
        full = part.new_full((self.active.shape[0], *part.shape[1:]), fill)
        full[self.index] = part
        return full

    def stop(self, stop: torch.Tensor) -> torch.Tensor:
        """End the batch rows ``stop``; return which of the rows that were running go on."""
        kept = ~self.take(stop)
        self.active &= ~stop
        self.index = self.active.nonzero().squeeze(1)
        return kept


class _Capture:
    """The ``x0`` of every step and the step each position was committed at (``capture=True``)."""

    def __init__(self, batch: int, steps: int, gen_length: int, device: torch.device):
        self.traj = torch.empty((batch, steps, gen_length), dtype=torch.int32, device=device)
        self.commit_step = torch.full((batch, gen_length), -1, dtype=torch.long, device=device)

    def record(self, step: int, rows: _Rows, x0: torch.Tensor, commit: torch.Tensor) -> None:
        rows.write(self.traj[:, step], x0)
        self.commit_step = rows.merge(self.commit_step, torch.where(commit, step, rows.take(self.commit_step)))

    def commit_rest(self, step: int, still: torch.Tensor) -> None:
        """Stopping rows commit their masked positions ``still`` at ``step``."""
        self.commit_step = torch.where(still, step, self.commit_step)

    def result(self, steps_run: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(trajectory [B, steps, G], commit_step) on the CPU; steps after a row stopped repeat its last x0."""
        last = torch.minimum(torch.arange(steps, device=steps_run.device)[None, :], steps_run[:, None] - 1)
        traj = self.traj.gather(1, last[:, :, None].expand(-1, -1, self.traj.shape[-1]))
        return traj.cpu(), self.commit_step.cpu()


def _forbid(logits: torch.Tensor, mask_id: int, eos: list[int]) -> torch.Tensor:
    """The mask token is never a prediction: a committed position must hold a real token (LLaDA
    gives it no mass anyway; a committed mask would silently re-open the position). ``eos``:
    further ids never predicted (suppress_eos)."""
    logits[..., mask_id] = -torch.inf
    if eos:
        logits[..., eos] = -torch.inf
    return logits


def _predict(logits: torch.Tensor, temperature: float, generator, rows: _Rows) -> torch.Tensor:
    """x0: argmax, or float64 Gumbel-max ``exp(logits) / (-log U) ** temperature``."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    lg = logits.to(torch.float64)
    u = _uniform(tuple(lg.shape), torch.float64, lg.device, generator, rows.index)
    return (lg.exp() / (-torch.log(u)) ** temperature).argmax(dim=-1)


def _gap(logits: torch.Tensor, off: int) -> torch.Tensor:
    """Top-1 minus top-2 logit per generation position (float32); NaN for the ``off`` cached ones."""
    top2 = logits.topk(2, dim=-1).values.float()
    gap = top2[..., 0] - top2[..., 1]
    return torch.cat([gap.new_full((gap.shape[0], off), torch.nan), gap], dim=1) if off else gap


def _choose(logits: torch.Tensor, off: int, xg: torch.Tensor, step: int, schedule: QuotaSchedule | ThresholdSchedule,
            cfg: SamplerConfig, mask_id: int, generator, rows: _Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, commit) of one step for the running rows, whose generation span is ``xg``: the
    prediction of every position (committed ones keep their token) and the positions that the
    schedule commits now, the most confident candidates of each row's current block."""
    x0 = _predict(logits, cfg.temperature, generator, rows)
    if off:  # the cached prefix's positions are committed: they predict themselves
        x0 = torch.cat([xg[:, :off], x0], dim=1)
    masked = xg == mask_id
    x0 = torch.where(masked, x0, xg)
    starts = schedule.block_starts(masked)
    positions = torch.arange(xg.shape[1], device=xg.device)
    candidate = masked & (positions >= starts[:, None]) & (positions < starts[:, None] + cfg.block_length)
    if cfg.remasking == "low_confidence":
        conf = block_confidence(logits, x0, starts, cfg.block_length, off)
    else:
        conf = _uniform(tuple(xg.shape), torch.float32, xg.device, generator, rows.index)
    conf = conf.masked_fill(~candidate, -torch.inf)
    return x0, most_confident(conf, schedule.counts(step, conf, candidate, rows.index))


def _stopping(asked, done: torch.Tensor | None, active: torch.Tensor) -> torch.Tensor | None:
    """The running rows that stop now (bool [B]): those the step callback ``asked`` to stop and
    those the schedule says are ``done``; None when there are none."""
    parts = [torch.as_tensor(s, device=active.device).bool() for s in (asked, done) if s is not None]
    if not parts:
        return None
    stop = (parts[0] | parts[1] if len(parts) == 2 else parts[0]) & active
    return stop if bool(stop.any()) else None


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
    G, steps = cfg.gen_length, cfg.max_steps
    forbidden = eos if cfg.suppress_eos else []

    x = torch.cat([input_ids.long(), input_ids.new_full((B, G), mask_id, dtype=torch.long)], dim=1)
    am = None
    prompt_real = torch.ones(B, P, dtype=torch.bool, device=device)
    if attention_mask is not None and not bool(attention_mask.bool().all()):
        prompt_real = attention_mask.bool()
        am = torch.cat([attention_mask.long(), attention_mask.new_ones((B, G), dtype=torch.long)], dim=1)

    schedule = make_schedule(cfg)
    forward = make_forward(model, cfg, P, mask_id)
    rows = _Rows(B, device)
    record = _Capture(B, steps, G, device) if capture else None
    steps_run = torch.full((B,), steps, dtype=torch.long, device=device)
    x0_all = x[:, P:]  # the latest x0 of every row (a stopped row keeps its last); set at step 0

    for step in range(steps):
        if schedule.begin(step, x[:, P:] == mask_id):
            forward.restart(schedule.settled)
        xa = rows.take(x)
        logits, off = forward(xa, rows.take(am), rows.take(prompt_real))
        logits = _forbid(logits, mask_id, forbidden)
        x0, commit = _choose(logits, off, xa[:, P:], step, schedule, cfg, mask_id, generator, rows)
        rows.write(x[:, P:], torch.where(commit, x0, xa[:, P:]))
        x0_all = rows.merge(x0_all, x0)
        if record is not None:
            record.record(step, rows, x0, commit)

        masked = x[:, P:] == mask_id
        asked = None
        if step_callback is not None:
            gap = (rows.spread(_gap(logits, off), torch.nan),) if callback_gap else ()
            asked = step_callback(step, x0_all, masked, *gap)
        stop = _stopping(asked, schedule.finished(masked), rows.active)
        if stop is None:
            continue
        # Stopped rows take the current prediction for every position still masked.
        still = masked & stop[:, None]
        x[:, P:] = torch.where(still, x0_all, x[:, P:])
        steps_run = torch.where(stop, step + 1, steps_run)
        if record is not None:
            record.commit_rest(step, still)
        forward.keep_rows(rows.stop(stop))
        if not bool(rows.active.any()):
            break

    trajectory = commit_step = None
    if record is not None:
        # With parallel decoding: as many captures as the longest row ran.
        ran = steps if cfg.parallel_threshold is None else int(steps_run.max())
        trajectory, commit_step = record.result(steps_run, ran)
    passes = steps_run * (2 if cfg.cfg_scale > 0 else 1)  # guidance runs the unconditional copy too
    return GenerationOutput(sequences=x, trajectory=trajectory, steps_run=steps_run, commit_step=commit_step,
                            forward_passes=passes)
