"""DiffusionGemma denoising with per-step capture, driven through transformers' own
``generate`` (the loop is not copied): a streamer receives every step's draft
(``put_draft``) and every committed canvas (``put``).

What a captured step is (the rule ``steps_run`` and the trajectory follow). transformers
runs the decoder on the whole batch at every step of a canvas, but counts a row's forward
pass (``decoder_forward_passes``, the denominator of its ``tokens_per_forward``) only while
the row has neither met the adaptive stopping rule in this canvas (stable and confident:
its draft is frozen from then on) nor finished its sequence (an EOS in an earlier canvas:
its later canvases are all pad). A step is captured for a row exactly when that row's
forward pass counts, so a row's captured steps are, canvas after canvas, the steps it was
still denoising: with several canvases the steps are summed over canvases, and rows (and
canvases) differ in their counts. ``denoise`` checks this count against transformers' own
(recovered from ``tokens_per_forward``) and raises if they ever disagree.

A row's token view at a captured step is its committed earlier canvases, then the current
draft (the argmax canvas transformers streams), then later canvases filled with the pad id;
as in transformers' output, every token after the first EOS is pad. So the last captured view
is exactly the row's returned tokens, and decoding a view cuts where the draft's text ends.

Seed rule: transformers draws the initial random canvas, the samples and the renoising from
the global RNG; ``denoise`` seeds it with ``torch.manual_seed(seed)`` inside a forked RNG
state (the caller's RNG is left as it was). Identical (seed, batch, settings, model, device)
give identical tokens and steps (on CPU; a GPU also needs deterministic kernels). A row's
result depends on its batch: the draws are shaped [batch, canvas], so the same prompt alone,
twice in one batch or beside other prompts gets different tokens; and left padding alone
(one row, same draws) changes a row too, as transformers numbers positions from the padded
start. Where batch composition must not change a row, call ``denoise`` with one unpadded row
at a time, seeded per row.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .settings import DiffusionGemmaSettings

__all__ = ["Denoised", "denoise"]


@dataclass
class Denoised:
    """``sequences`` [B, G]: the generated tokens after the prompt, exactly as transformers'
    ``generate`` returned them (G = canvases generated x canvas_length); ``trajectory``
    [B, S, G] int32 on CPU (None without capture): each row's token view at each captured
    step, a row with fewer steps repeating its last view up to S = max(steps_run);
    ``steps_run`` [B]: captured steps per row; ``forward_passes`` [B]: decoder forward passes
    per row as transformers counts them (equal to ``steps_run``: one pass per step)."""

    sequences: torch.LongTensor
    trajectory: torch.Tensor | None
    steps_run: torch.LongTensor
    forward_passes: torch.LongTensor


class _Capture:
    """The streamer handed to ``generate`` (``put`` / ``put_draft`` / ``end``) and the
    observer of the adaptive stopping rule's verdicts."""

    def __init__(self, keep_drafts: bool):
        self.keep_drafts = keep_drafts
        self.canvas = -1  # generate's first put() is the prompt: canvas 0 starts after it
        self.steps: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []  # (canvas, active, draft)
        self._stopped: torch.Tensor | None = None  # rows that met the stopping rule this canvas
        self._active: torch.Tensor | None = None  # rows still denoising at the current step

    def put(self, value: torch.Tensor) -> None:
        self.canvas += 1
        self._stopped = None

    def put_draft(self, value: torch.Tensor) -> None:
        # no verdict this step = no adaptive stopping configured: every row is denoising
        active = self._active if self._active is not None else torch.ones(value.shape[0], dtype=torch.bool)
        self.steps.append((self.canvas, active, value.clone() if self.keep_drafts else None))
        self._active = None

    def end(self) -> None:
        pass

    def observe_stop(self, stop: torch.Tensor) -> None:
        """One step's verdict (called before that step's draft): rows that had already
        stopped were not denoising at this step."""
        stop = stop.detach().to("cpu", torch.bool)
        self._active = torch.ones_like(stop) if self._stopped is None else ~self._stopped
        self._stopped = stop if self._stopped is None else self._stopped | stop


class _ObservedStop:
    """Transformers' stopping-rule object, reporting each verdict before returning it."""

    def __init__(self, inner: Any, observe: Callable[[torch.Tensor], None]):
        self.inner, self.observe = inner, observe

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        stop = self.inner(*args, **kwargs)
        self.observe(stop)
        return stop

    def reset(self) -> None:
        self.inner.reset()


@contextmanager
def _observing_stops(model: Any, observe: Callable[[torch.Tensor], None]):
    """Why an internal: transformers 5.24's DiffusionGemma ``generate`` tells no caller which
    rows met the adaptive stopping rule at a step (a stopped row's frozen draft looks like a
    stable but unconfident one, and ``tokens_per_forward`` only gives the total), so the one
    faithful signal is the verdict of the rule object it builds in
    ``_prepare_diffusion_stopping_criteria``. This wraps that object for one call; everything
    else about the loop stays transformers'. ``denoise`` cross-checks the result with
    transformers' own ``tokens_per_forward``."""
    name = "_prepare_diffusion_stopping_criteria"
    build = getattr(model, name, None)
    if build is None:
        raise RuntimeError(f"{type(model).__name__} has no {name}: per-step capture for DiffusionGemma "
                           f"was written against transformers 5.24's generate")
    own = model.__dict__.get(name)

    def observed(generation_config):
        inner = build(generation_config)
        return None if inner is None else _ObservedStop(inner, observe)

    setattr(model, name, observed)
    try:
        yield
    finally:
        if own is None:
            delattr(model, name)
        else:
            setattr(model, name, own)


def _special_ids(model: Any) -> tuple[int, torch.Tensor]:
    gen = model.generation_config
    if gen.pad_token_id is None or gen.eos_token_id is None:
        # without them transformers neither stops a row at EOS nor pads it, and a finished row's
        # later canvases would hold uncounted drafts
        raise ValueError("DiffusionGemma: the model's generation_config needs pad_token_id and eos_token_id "
                         "(load() fills them from the tokenizer when the checkpoint has none)")
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, (list, tuple)) else [gen.eos_token_id]
    return int(gen.pad_token_id), torch.tensor(eos, dtype=torch.long)


def _pad_after_eos(rows: torch.Tensor, eos: torch.Tensor, pad: int) -> torch.Tensor:
    """Every token after a row's first EOS set to pad, as transformers finalises a canvas."""
    seen = torch.isin(rows, eos).long().cumsum(dim=-1)
    after = (seen > 1) | ((seen == 1) & ~torch.isin(rows, eos))
    return rows.masked_fill(after, pad)


def _last_canvas(sequences: torch.Tensor, eos: torch.Tensor, canvas_length: int) -> torch.Tensor:
    """Each row's last denoised canvas: the one holding its first EOS (transformers'
    EosTokenCriteria finishes the row there), else the last one generated."""
    is_eos = torch.isin(sequences, eos)
    n_canvases = sequences.shape[1] // canvas_length
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), sequences.shape[1])
    return torch.clamp(first // canvas_length, max=n_canvases - 1)


def _transformers_passes(sequences: torch.Tensor, tokens_per_forward: torch.Tensor, pad: int) -> torch.Tensor:
    """Decoder passes per row as transformers counted them: it reports non-pad tokens / passes
    (rows with no non-pad token report 0 and are not recoverable: -1)."""
    valid = (sequences != pad).sum(dim=1).double()
    tpf = tokens_per_forward.detach().cpu().double()
    return torch.where(tpf > 0, torch.round(valid / tpf.clamp(min=1e-30)), -1.0).long()


def _views(captured: list[tuple[int, torch.Tensor, torch.Tensor | None]], counted: torch.Tensor,
           steps_run: torch.Tensor, sequences: torch.Tensor, eos: torch.Tensor, pad: int,
           canvas_length: int) -> torch.Tensor:
    """The [B, S, G] trajectory: each row's view at its captured steps, its last view repeated."""
    B, G = sequences.shape
    views = torch.empty((len(captured), B, G), dtype=torch.int32)
    for i, (canvas, _, draft) in enumerate(captured):
        start = canvas * canvas_length
        view = sequences.clone()
        view[:, start:start + canvas_length] = draft
        view[:, start + canvas_length:] = pad
        views[i] = _pad_after_eos(view, eos, pad).to(torch.int32)
    S = int(steps_run.max())
    out = torch.empty((B, S, G), dtype=torch.int32)
    for r in range(B):
        idx = counted[:, r].nonzero().flatten()
        idx = torch.cat([idx, idx[-1:].expand(S - len(idx))])
        out[r] = views[idx, r]
    return out


def denoise(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
            settings: DiffusionGemmaSettings, *, seed: int, capture: bool) -> Denoised:
    """Generate for a (left-padded) batch with transformers' ``generate`` and ``settings``,
    seeding the global RNG with ``seed`` (see the module docstring for the seed and step
    rules). ``capture``: also return each row's token view at each of its denoising steps."""
    pad, eos = _special_ids(model)
    canvas_length = int(model.config.canvas_length)
    cap = _Capture(keep_drafts=capture)
    kwargs = settings.to_generate_kwargs()
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    device = input_ids.device
    # fork_rng restores only the RNGs it is given: the CPU one and the generating GPU's
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _observing_stops(model, cap.observe_stop):
        torch.manual_seed(seed)
        out = model.generate(input_ids, streamer=cap, return_dict_in_generate=True, **kwargs)
    sequences = out.sequences[:, input_ids.shape[1]:]
    seq_cpu = sequences.detach().cpu()

    canvases = torch.tensor([c for c, _, _ in cap.steps])
    active = torch.stack([a for _, a, _ in cap.steps])  # [steps, B]
    counted = active & (canvases[:, None] <= _last_canvas(seq_cpu, eos, canvas_length)[None, :])
    steps_run = counted.sum(dim=0)
    theirs = _transformers_passes(seq_cpu, out.tokens_per_forward, pad)
    known = theirs >= 0
    if not torch.equal(theirs[known], steps_run[known]):
        raise RuntimeError(f"DiffusionGemma step count {steps_run.tolist()} disagrees with transformers' decoder "
                           f"passes {theirs.tolist()}: this transformers version changed generate's loop")
    trajectory = _views(cap.steps, counted, steps_run, seq_cpu, eos, pad, canvas_length) if capture else None
    return Denoised(sequences=sequences, trajectory=trajectory, steps_run=steps_run, forward_passes=steps_run.clone())
