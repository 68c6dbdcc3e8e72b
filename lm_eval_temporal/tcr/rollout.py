"""Rollouts for TCR: G sampled completions per prompt with the package's sampler, and the
answer the model holds at every denoising step (what the TSE reward reads)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lm_eval_temporal import answers
from lm_eval_temporal.sampler import SamplerConfig, generate
from lm_eval_temporal.tcr.loss import completion_mask

__all__ = ["Rollout", "encode_prompts", "step_texts", "rollout"]


@dataclass
class Rollout:
    """One micro-batch of completions, ``group_size`` consecutive rows per prompt."""

    prompt_ids: torch.Tensor  # [B, P] left-padded
    prompt_attention: torch.Tensor  # [B, P] 1 = real token
    completion_ids: torch.Tensor  # [B, gen_length]
    completion_mask: torch.Tensor  # [B, gen_length] bool, up to and including the first stop token
    prompts: list[str]
    completions: list[str]
    step_answers: list[list[str | None]]
    gold: list[Any]
    task: str
    group_size: int

    def __len__(self) -> int:
        return len(self.completions)

    def reward_kwargs(self) -> dict[str, Any]:
        """The keyword arguments reward functions receive (TRL style: one entry per completion)."""
        return {"step_answers": self.step_answers, "gold": self.gold, "task": self.task}


def encode_prompts(tokenizer: Any, texts: Sequence[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask. BOS is added by the tokenizer unless the text already
    starts with it (chat templates write it), as the evaluation backend does."""
    bos = getattr(tokenizer, "bos_token", None)
    rows = [tokenizer(t, add_special_tokens=not (bos and t.startswith(bos)))["input_ids"] for t in texts]
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), P), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, P - len(r):] = torch.tensor(r, dtype=torch.long)
            attn[i, P - len(r):] = 1
    return ids, attn


def step_texts(tokenizer: Any, trajectory: torch.Tensor, stop_ids: Iterable[int]) -> list[str]:
    """Text of each captured step ([T, G] tokens), cut at the first stop token; steps whose
    tokens did not change reuse the previous decode (most steps change only a few tokens)."""
    stop = set(stop_ids)
    out: list[str] = []
    prev: list[int] | None = None
    for row in trajectory.tolist():
        if row != prev:
            end = next((i for i, t in enumerate(row) if t in stop), len(row))
            text = tokenizer.decode(row[:end], skip_special_tokens=True)
            prev = row
        out.append(text)
    return out


@torch.no_grad()
def rollout(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    gold: Sequence[Any],
    *,
    task: str,
    group_size: int,
    seeds: Sequence[int],
    sampler: SamplerConfig,
    mask_id: int,
    pad_id: int,
    eos_id: int | None,
    stop_ids: Iterable[int],
    batch_size: int | None = None,
    device: torch.device | str | None = None,
) -> Rollout:
    """Sample ``group_size`` completions for each prompt (row ``i * group_size + k`` is the k-th
    completion of prompt i), seeded per row by ``seeds`` so rows do not depend on their batch."""
    rows = [p for p in prompts for _ in range(group_size)]
    golds = [g for g in gold for _ in range(group_size)]
    if len(seeds) != len(rows):
        raise ValueError(f"need one seed per completion: {len(seeds)} seeds for {len(rows)} completions")
    stop_ids = sorted(set(stop_ids))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    ids, attn = encode_prompts(tokenizer, rows, pad_id)
    P = ids.shape[1]
    step = batch_size or len(rows)
    completions, trajectories = [], []
    for s in range(0, len(rows), step):
        gens = [torch.Generator(device=device).manual_seed(int(x)) for x in seeds[s : s + step]]
        out = generate(
            model,
            ids[s : s + step].to(device),
            attn[s : s + step].to(device),
            **sampler.kwargs(),
            mask_id=mask_id,
            eos_id=eos_id,
            generator=gens,
            capture=True,
        )
        completions.append(out.sequences[:, P:].cpu())
        trajectories.append(out.trajectory)
    comp = torch.cat(completions)
    traj = torch.cat(trajectories)
    texts, per_step = [], []
    parsed: dict[str, str | None] = {}  # consecutive steps often decode to the same text
    for b in range(len(rows)):
        st = step_texts(tokenizer, traj[b], stop_ids)
        # The last capture is the final output (DESIGN §2.7); decode it from the sequence anyway
        # so the completion text never depends on that invariant.
        final = step_texts(tokenizer, comp[b : b + 1], stop_ids)[0]
        st[-1] = final
        texts.append(final)
        for t in st:
            if t not in parsed:
                parsed[t] = answers.extract_answer(t, task)
        per_step.append([parsed[t] for t in st])
    return Rollout(
        prompt_ids=ids,
        prompt_attention=attn,
        completion_ids=comp,
        completion_mask=completion_mask(comp, stop_ids),
        prompts=rows,
        completions=texts,
        step_answers=per_step,
        gold=golds,
        task=task,
        group_size=group_size,
    )
