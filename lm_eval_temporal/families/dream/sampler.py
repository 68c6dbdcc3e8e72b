"""Dream's denoising (the official ``diffusion_generate`` of Dream-v0's ``generation_utils.py``)
with per-step capture.

The algorithm, as the official code runs it:

1. The canvas is the (left-padded) prompt followed by ``gen_length`` mask tokens. With any
   padding in the batch, positions count each row's real tokens from 0 and attention joins
   real tokens only (:func:`~lm_eval_temporal.families.dream.model.padding_inputs`); without,
   positions 0..L-1 and full attention.
2. Every step runs the model on the whole canvas and shifts the logits one position right
   (Dream is initialised from an autoregressive model: the token at i is predicted at i - 1).
3. Timesteps ``t = linspace(1, eps, steps + 1)``; step i goes from ``t[i]`` to ``s = t[i + 1]``.
4. For the masked positions: logits / temperature (if > 0), then top-p, then top-k, softmax;
   ``x0`` is a draw from it (temperature > 0) or its argmax, confidence its probability.
5. ``alg=origin``: each masked position is committed with probability ``1 - s / t`` (all at
   the last step), to a token drawn as in 4. The other rules commit
   ``int(masked * (1 - s / t))`` positions (all at the last step), the most confident ones
   (``alg_temp`` 0) or drawn from ``softmax(confidence / alg_temp)`` without replacement,
   where confidence is the probability of ``x0`` (``maskgit_plus``), the top-1 minus top-2
   probability (``topk_margin``) or the negative entropy (``entropy``).
6. With ``capture=True`` each step's view of the generation span is kept: the committed
   tokens and the step's ``x0`` at every position still masked (for ``origin``, whose ``x0``
   is drawn only where it commits, the argmax there: no random number is spent on it).

Deviations from the official code, each chosen so that a row never depends on its batch
(with one row they change nothing, except where said):

- Random numbers come from one ``torch.Generator`` per row (the official code draws from the
  global RNG for the whole batch). The draws are the official ones in order and shape, so a
  row seeded with s gives the tokens the official code gives for that prompt alone after
  ``torch.manual_seed(s)`` (same device and dtype). At temperature 0, ``alg_temp`` 0 and a
  rule other than ``origin`` nothing is drawn and rows match exactly whatever the seeds.
- The number of positions to commit is each row's own (the official code takes the batch
  mean, which equals it unless prompts hold mask tokens) and the confidence ranking runs over
  the row's own canvas, as it would alone.
- Only the generation span is decoded: a mask token inside a prompt is context (the official
  code would fill it too).
- When the official sampling falls back to the argmax (``Categorical`` refuses probabilities
  that do not sum to 1 within 1e-6, e.g. in bfloat16), it does so for the whole batch; here
  for the row that failed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lm_eval_temporal.sampler import GenerationOutput

from .model import padding_inputs
from .settings import DreamSettings

__all__ = ["generate", "sample_tokens", "shifted_logits"]


def shifted_logits(logits: torch.Tensor) -> torch.Tensor:
    """Dream's right shift: position i gets the logits computed at i - 1 (position 0 keeps its own)."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def _keep_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: keep the most probable tokens up to cumulative probability ``top_p``
    (the first one always), the rest set to the dtype's lowest value."""
    ordered, order = torch.sort(logits, descending=True)
    beyond = torch.softmax(ordered, dim=-1).cumsum(dim=-1) > top_p
    beyond = torch.cat([torch.zeros_like(beyond[..., :1]), beyond[..., :-1]], dim=-1)  # keep the one crossing
    drop = torch.zeros_like(beyond).scatter(-1, order, beyond)
    return logits.masked_fill(drop, torch.finfo(logits.dtype).min)


def _keep_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def sample_tokens(logits: torch.Tensor, settings: DreamSettings,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, x0) of masked positions' logits [N, V] under ``settings`` (step 4 and the
    confidence of ``settings.alg``), in the logits' dtype as the official code computes it."""
    if settings.temperature > 0:
        logits = logits / settings.temperature
    if settings.top_p is not None and settings.top_p < 1:
        logits = _keep_top_p(logits, settings.top_p)
    if settings.top_k is not None:
        logits = _keep_top_k(logits, settings.top_k)
    probs = torch.softmax(logits, dim=-1)
    confidence, x0 = probs.max(dim=-1)
    if settings.temperature > 0:
        try:
            # Categorical validates (and renormalises) the probabilities as the official code's
            # draw does; on a refusal it keeps the argmax, as the official code does.
            dist = torch.distributions.Categorical(probs=probs)
            x0 = torch.multinomial(dist.probs.reshape(-1, probs.shape[-1]), 1, True, generator=generator)[:, 0]
            confidence = probs.gather(-1, x0[:, None])[:, 0]
        except Exception:  # noqa: BLE001 - the official code's bare except, deliberately
            pass
    if settings.alg == "topk_margin":
        top2 = torch.sort(probs, dim=-1, descending=True).values[:, :2]
        confidence = top2[:, 0] - top2[:, 1]
    elif settings.alg == "entropy":
        confidence = (probs * torch.log(probs + 1e-10)).sum(dim=-1)
    return confidence, x0


def _check(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, settings: DreamSettings, model,
           mask_id: int, generators) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
        raise ValueError("input_ids: expected a 2-D integer tensor [batch, prompt_length]")
    B, P = input_ids.shape
    if B == 0 or P == 0:
        raise ValueError(f"input_ids: empty prompt (shape {tuple(input_ids.shape)}); every row needs >= 1 token")
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (B, P):
            raise ValueError(f"attention_mask: expected shape {(B, P)} like input_ids, got {tuple(attention_mask.shape)}")
        real = attention_mask.bool()
        if not bool(real[:, -1].all()) or bool((real[:, :-1] & ~real[:, 1:]).any()):
            raise ValueError("attention_mask: expected left padding (zeros, then ones) in every row, "
                             "each with >= 1 real token")
    pad = getattr(model.config, "pad_token_id", None)
    if pad is not None and int(pad) == mask_id:
        raise ValueError(f"mask_id={mask_id} equals the model's pad_token_id: padding would read as masked")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and P + settings.gen_length > int(limit):
        raise ValueError(f"gen_length={settings.gen_length}: prompt length {P} + gen_length exceeds the model's "
                         f"max_position_embeddings={limit}")
    if generators is not None and len(generators) != B:
        raise ValueError(f"generators: expected one torch.Generator per row ({B}), got {len(generators)}")


@torch.no_grad()
def generate(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
             settings: DreamSettings, *, mask_id: int, generators: Sequence[torch.Generator] | None = None,
             capture: bool = False) -> GenerationOutput:
    """Denoise ``settings.gen_length`` tokens after each (left-padded) prompt (module
    docstring). ``model(x, attention_mask=4-D mask, position_ids=...)`` returns unshifted
    ``.logits`` [B, L, V]. ``generators``: one per row (None: the global RNG, as the official
    code). ``capture=True`` fills ``trajectory`` [B, steps, G] and never changes the tokens."""
    _check(input_ids, attention_mask, settings, model, mask_id, generators)
    device = input_ids.device
    B, P = input_ids.shape
    G, steps = settings.gen_length, settings.steps
    x = torch.cat([input_ids.long(), input_ids.new_full((B, G), mask_id, dtype=torch.long)], dim=1)
    canvas_mask = None
    if attention_mask is not None:
        canvas_mask = torch.cat([attention_mask.long(), attention_mask.new_ones((B, G), dtype=torch.long)], dim=1)
    # each row's first real position: its canvas is x[b, start:], as it would be alone
    starts = [0] * B if canvas_mask is None else (canvas_mask == 0).sum(dim=1).tolist()
    positions, pairs = padding_inputs(canvas_mask)
    timesteps = torch.linspace(1, settings.eps, steps + 1, device=device)
    trajectory = torch.empty((B, steps, G), dtype=torch.int32, device=device) if capture else None

    for i in range(steps):
        logits = model(x, attention_mask=pairs, position_ids=positions).logits
        # = shifted_logits(logits)[:, P:] (position P + j predicted at P + j - 1), without
        # copying the whole [B, L, V] tensor
        span = logits[:, P - 1:P + G - 1]
        t, s = timesteps[i], timesteps[i + 1]
        last = i == steps - 1
        for b in range(B):
            gen = generators[b] if generators is not None else None
            view = _step(x[b], span[b], P, starts[b], t, s, last, settings, mask_id, gen)
            if trajectory is not None:
                trajectory[b, i] = view

    done = torch.full((B,), steps, dtype=torch.long, device=device)
    return GenerationOutput(sequences=x, trajectory=None if trajectory is None else trajectory.cpu(), steps_run=done,
                            forward_passes=done.clone())


def _step(row: torch.Tensor, span_logits: torch.Tensor, P: int, start: int, t: torch.Tensor, s: torch.Tensor,
          last: bool, settings: DreamSettings, mask_id: int, gen: torch.Generator | None) -> torch.Tensor:
    """One step of one row, in place on ``row`` (its canvas [L]); returns its view [G] (step 6)."""
    gen_tokens = row[P:]
    masked = gen_tokens == mask_id
    n = int(masked.sum())
    if n == 0:
        return gen_tokens.clone()
    logits = span_logits[masked]  # [n, V]
    if settings.alg == "origin":
        guess = logits.argmax(dim=-1)
        p_transfer = 1 if last else 1 - s / t
        transfer = torch.rand(n, device=row.device, generator=gen) < p_transfer
        if bool(transfer.any()):
            _, drawn = sample_tokens(logits[transfer], settings, gen)
            new = torch.full_like(guess, mask_id)
            new[transfer] = drawn
            gen_tokens[masked] = new
            guess[transfer] = drawn
    else:
        confidence, guess = sample_tokens(logits, settings, gen)
        # the official count: int() of a float32 product, all that is left at the last step
        k = n if last else int(torch.tensor(n, dtype=torch.float32, device=t.device) * (1 - s / t))
        if k > 0:
            # ranked over the row's own canvas (prompt at -inf), the tensor the official code ranks
            full = torch.full((row.shape[0] - start,), -torch.inf, dtype=confidence.dtype, device=row.device)
            full[P - start:][masked] = confidence
            if settings.alg_temp == 0:
                chosen = torch.topk(full, k).indices
            else:
                chosen = torch.multinomial(F.softmax(full / settings.alg_temp, dim=-1), k, generator=gen)
            proposal = torch.full_like(gen_tokens, mask_id)
            proposal[masked] = guess
            gen_tokens[chosen - (P - start)] = proposal[chosen - (P - start)]
    view = gen_tokens.clone()
    view[masked] = torch.where(view[masked] == mask_id, guess, view[masked])
    return view
