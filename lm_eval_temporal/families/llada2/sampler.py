"""LLaDA2.x block decoding (the hub's ``LLaDA2MoeModelLM.generate``) with per-step capture.

The algorithm, as the official code runs it, for one prompt of length P:

1. The canvas is the prompt followed by mask tokens up to ``ceil((P + gen_length) /
   block_length)`` whole blocks; positions 0..L-1; block-causal attention.
2. Blocks are decoded left to right from the one holding position P (a block wholly inside
   the prompt is never decoded). A step runs the model on the canvas up to the end of the
   current block (here with a key/value cache, below) and takes the block's logits: ``x0`` is
   their argmax (temperature 0) or a draw from softmax(logits / temperature), its confidence
   its probability.
3. A step commits the masked positions of the block whose confidence exceeds ``threshold``;
   if fewer than the even schedule's share (``block_length`` split over ``steps_per_block``
   steps), the share's most confident ones instead. A block ends when it has no mask left (at
   most ``steps_per_block`` steps).
4. ``eos_early_stop``: when a step commits EOS and every position from P to the first EOS is
   committed, decoding stops. After every block, decoding stops if the generation so far holds
   an EOS. The output ends at the first EOS (here: every later position is set to EOS).
5. LLaDA2.1 (``editing_threshold`` set, the hub's 2.1 ``generate``): a block has no step cap;
   a step commits masked positions as in 3 with a share of ``num_to_transfer`` (1), and also
   re-writes every committed, non-prompt position of the block whose ``x0`` differs from it
   with probability above ``editing_threshold``. A block ends when it has no mask and a step
   edits nothing, or after ``max_post_steps`` steps without masks. ``eos_early_stop``: stop
   after a block when the generation is fully committed and holds an EOS (no other stop).
6. With ``capture=True`` each step's view of the generation span is kept: the committed
   tokens, the step's ``x0`` at the block's still-masked positions, mask tokens in later blocks,
   and EOS after the first EOS (rule 4), so the last view equals the output.

Deviations, each chosen so that a row never depends on its batch:

- Rows are decoded one at a time, each on its own unpadded prompt (the official code takes a
  single prompt); rows run their own numbers of steps.
- Random draws (temperature > 0) come from one ``torch.Generator`` per row.

Key/value cache (``use_cache=True``, the default): the official ``generate`` (2.0's and 2.1's)
runs every step on the whole canvas up to the end of the current block. Here a step runs only
the positions not yet cached, up to that end, against the cached keys/values of the earlier
ones, and keeps the keys/values of every position before the current block. So the first step
runs the window as the official one does (the prefill of the prompt's whole blocks), the
first step of each later block runs the finished block, as committed (EOS and 2.1's edits
included), together with the new block, and every other step runs the block alone. The
logits are the official ones: under block-causal attention a position before the current
block sees only its own and earlier blocks, whose tokens no later step changes, so its keys
and values are those the recomputation would make again (bit for bit in the tests' float64;
in bf16 a shorter matrix product may round differently, as a different batch would). No pass
is added (a finished block's keys/values come from the next block's first step), so a step is
one forward pass as in the official code and ``steps_run`` and ``forward_passes`` count as
before. ``use_cache=False`` runs the official recomputation, the reference of the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lm_eval_temporal.sampler import GenerationOutput

from .model import KVCache, block_causal_mask
from .settings import LLaDA2Settings

__all__ = ["generate", "even_schedule"]


def even_schedule(block_length: int, steps: int) -> list[int]:
    """``block_length`` positions split over ``steps`` steps, the remainder on the first ones."""
    base, extra = divmod(block_length, steps)
    return [base + (i < extra) for i in range(steps)]


def _x0(logits: torch.Tensor, temperature: float, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, their probabilities) of logits [N, V]: the argmax at temperature 0, else a draw.
    The softmax runs in the logits' dtype, as the hub's (bf16 probabilities decide which
    positions clear ``threshold``: float32 ones would commit differently near it)."""
    if temperature == 0:
        probs = torch.softmax(logits, dim=-1)
        tokens = probs.argmax(dim=-1)
    else:
        probs = torch.softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
        tokens = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1)


def _view(canvas: torch.Tensor, P: int, G: int, eos_id: int | None) -> torch.Tensor:
    """The generation span [G] with everything after its first EOS set to EOS (rule 4)."""
    span = canvas[P:P + G].clone()
    if eos_id is not None:
        hits = (span == eos_id).nonzero()
        if len(hits):
            span[int(hits[0]):] = eos_id
    return span


def _canvas(prompt: torch.Tensor, settings: LLaDA2Settings, mask_id: int):
    """(canvas [L], block-causal mask, positions) of rule 1: the prompt, then masks to whole blocks."""
    P, bl = prompt.shape[0], settings.block_length
    L = -(-(P + settings.gen_length) // bl) * bl
    canvas = torch.full((L,), mask_id, dtype=torch.long, device=prompt.device)
    canvas[:P] = prompt
    return canvas, block_causal_mask(L, bl, prompt.device), torch.arange(L, device=prompt.device)[None]


def _block_logits(model, canvas: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, end: int, bl: int,
                  cache: KVCache | None) -> tuple[torch.Tensor, KVCache | None]:
    """(the current block's logits [bl, V], the cache of every position before the block) from
    one forward pass over ``canvas[:end]``; ``cache`` None: the whole window is recomputed."""
    start = cache[0][0].shape[2] if cache else 0
    out = model(canvas[None, start:end], attention_mask=mask[..., start:end, :end],
                position_ids=positions[:, start:end], cache=cache or None, use_cache=cache is not None)
    if cache is not None:  # the block's own keys/values are of tokens its later steps may change
        cache = [(k[:, :, :end - bl], v[:, :, :end - bl]) for k, v in out.cache]
    return out.logits[0, -bl:], cache


def _guess_view(canvas: torch.Tensor, tokens: torch.Tensor, end: int, P: int, settings: LLaDA2Settings,
                mask_id: int, eos_id: int | None) -> torch.Tensor:
    """A step's capture: the canvas with the step's x0 at the current block's masked positions."""
    guess = canvas.clone()
    block = guess[end - settings.block_length:end]
    block.copy_(torch.where(block == mask_id, tokens, block))
    return _view(guess, P, settings.gen_length, eos_id)


def decode_row(model, prompt: torch.Tensor, settings: LLaDA2Settings, *, mask_id: int, eos_id: int | None,
               gen: torch.Generator | None = None, capture: bool = False,
               use_cache: bool = True) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """(generated tokens [gen_length], the step views (capture only), steps run) of one unpadded prompt [P]."""
    if settings.editing_threshold is not None:
        return _decode_row_editing(model, prompt, settings, mask_id=mask_id, eos_id=eos_id, gen=gen, capture=capture,
                                   use_cache=use_cache)
    P, G, bl = prompt.shape[0], settings.gen_length, settings.block_length
    canvas, mask, positions = _canvas(prompt, settings, mask_id)
    cache: KVCache | None = [] if use_cache else None
    blocks = canvas.shape[0] // bl
    schedule = even_schedule(bl, settings.steps_per_block)
    views: list[torch.Tensor] = []
    steps = 0
    for blk in range(P // bl, blocks):
        end = (blk + 1) * bl
        for share in schedule:
            block = canvas[end - bl:end]
            masked = block == mask_id
            if not bool(masked.any()):
                break
            logits, cache = _block_logits(model, canvas, mask, positions, end, bl, cache)
            tokens, probs = _x0(logits, settings.temperature, gen)
            confidence = torch.where(masked, probs, -torch.inf)
            commit = confidence > settings.threshold
            if int(commit.sum()) < share:
                commit = torch.zeros_like(masked)
                commit[torch.topk(confidence, min(share, int(masked.sum()))).indices] = True
            block[commit] = tokens[commit]
            steps += 1
            if capture:
                views.append(_guess_view(canvas, tokens, end, P, settings, mask_id, eos_id))
            if settings.eos_early_stop and eos_id is not None and bool((tokens[commit] == eos_id).any()):
                first = int((canvas == eos_id).nonzero()[0])
                if first >= P and not bool((canvas[P:first] == mask_id).any()):
                    return _view(canvas, P, G, eos_id), views, steps
        if eos_id is not None and bool((canvas[P:end] == eos_id).any()):
            break
    return _view(canvas, P, G, eos_id), views, steps


def _decode_row_editing(model, prompt: torch.Tensor, settings: LLaDA2Settings, *, mask_id: int, eos_id: int | None,
                        gen: torch.Generator | None, capture: bool,
                        use_cache: bool) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """:func:`decode_row` by LLaDA2.1's rules (rule 5)."""
    P, G, bl = prompt.shape[0], settings.gen_length, settings.block_length
    canvas, mask, positions = _canvas(prompt, settings, mask_id)
    cache: KVCache | None = [] if use_cache else None
    blocks = canvas.shape[0] // bl
    views: list[torch.Tensor] = []
    steps = 0
    for blk in range(P // bl, blocks):
        end = (blk + 1) * bl
        block = canvas[end - bl:end]
        in_prompt = torch.arange(end - bl, end, device=prompt.device) < P
        post_steps = 0
        while True:
            masked = block == mask_id
            if not bool(masked.any()):
                post_steps += 1
            if post_steps > settings.max_post_steps:
                break
            logits, cache = _block_logits(model, canvas, mask, positions, end, bl, cache)
            tokens, probs = _x0(logits, settings.temperature, gen)
            commit = torch.zeros_like(masked)
            if bool(masked.any()):
                confidence = torch.where(masked, probs, -torch.inf)
                commit = confidence > settings.threshold
                if int(commit.sum()) < settings.num_to_transfer:
                    commit = torch.zeros_like(masked)
                    commit[torch.topk(confidence, min(settings.num_to_transfer, int(masked.sum()))).indices] = True
            edit = ~masked & ~in_prompt & (probs > settings.editing_threshold) & (tokens != block)
            block[commit | edit] = tokens[commit | edit]
            steps += 1
            if capture:
                views.append(_guess_view(canvas, tokens, end, P, settings, mask_id, eos_id))
            if not bool(masked.any()) and not bool(edit.any()):
                break
        if settings.eos_early_stop and eos_id is not None and not bool((canvas[P:end] == mask_id).any()) \
                and bool((canvas[P:end] == eos_id).any()):
            break
    return _view(canvas, P, G, eos_id), views, steps


def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: LLaDA2Settings, *,
             mask_id: int, eos_id: int | None, generators: Sequence[torch.Generator] | None = None,
             capture: bool = False, use_cache: bool = True) -> GenerationOutput:
    """Decode a left-padded batch [B, P] row by row; ``sequences`` is [B, P + gen_length].
    ``use_cache=False``: every step recomputes its window (the official passes, same results)."""
    B, G = input_ids.shape[0], settings.gen_length
    outs, all_views, counts = [], [], []
    for b in range(B):
        prompt = input_ids[b][attention_mask[b].bool()]
        out, views, n = decode_row(model, prompt, settings, mask_id=mask_id, eos_id=eos_id,
                                gen=None if generators is None else generators[b], capture=capture,
                                use_cache=use_cache)
        outs.append(out)
        all_views.append(views)
        counts.append(n)
    steps = torch.tensor(counts, dtype=torch.long)
    trajectory = None
    if capture:
        S = max(1, int(steps.max()))
        trajectory = torch.empty((B, S, G), dtype=torch.int32)
        for b, views in enumerate(all_views):
            rows = views or [outs[b]]
            stacked = torch.stack(rows).to(torch.int32).cpu()
            trajectory[b, :len(rows)] = stacked
            trajectory[b, len(rows):] = stacked[-1]  # shorter rows repeat their last step
    sequences = torch.cat([input_ids, torch.stack(outs)], dim=1)
    steps = steps.to(input_ids.device)
    return GenerationOutput(sequences=sequences, trajectory=trajectory, steps_run=steps, forward_passes=steps.clone())
