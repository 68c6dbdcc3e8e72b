"""Text <-> token ids at the edges of the sampler: the one prompt-encoding rule (BOS, left
padding) and the one step decoder (cut at stop tokens and stop strings, decode, reuse the text
of unchanged steps). Used by the pipeline, its early-stop policy and the TCR rollouts."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = ["encode_prompt", "left_pad", "cut_at", "StepDecoder"]


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt. BOS is added by the tokenizer unless the text already starts
    with it (chat templates write it; a second one would be off-distribution)."""
    bos = getattr(tokenizer, "bos_token", None)
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids [N, P] and attention mask (1 = real token): the generation then starts
    at the same position in every row."""
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), P), dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            ids[i, P - len(r):] = torch.tensor(list(r), dtype=torch.long)
            attn[i, P - len(r):] = 1
    return ids, attn


def cut_at(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first occurrence of each stop string, applied in order."""
    for s in stops:
        if s:
            i = text.find(s)
            if i >= 0:
                text = text[:i]
    return text


def ends(rows: torch.Tensor, end_ids: torch.Tensor) -> torch.Tensor:
    """[N, G] rows -> [N]: the position of each row's first token in ``end_ids`` (G: none), i.e.
    its number of tokens before the end."""
    hit = torch.isin(rows, end_ids)
    return torch.where(hit.any(dim=1), hit.int().argmax(dim=1), rows.shape[1])


class StepDecoder:
    """Decodes generated rows as the answer parser should read them: each row ends at its
    first stop token (EOS, end of turn), special tokens are skipped, then the text ends at the
    first stop string. Thread-safe: the pipeline decodes on a worker thread while the early-stop
    policy decodes on the main one, and fast tokenizers are not re-entrant."""

    def __init__(self, tokenizer: Any, stop_ids: Iterable[int]):
        self.tokenizer = tokenizer
        self.stop_ids = torch.tensor(sorted(set(int(i) for i in stop_ids)), dtype=torch.long)
        self._lock = threading.Lock()

    def cut(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, G] rows -> (end [N], rows with every token from the first stop token on set to
        -1): two rows with equal cut rows decode to the same text."""
        end = ends(rows, self.stop_ids)
        keep = torch.arange(rows.shape[1])[None, :] < end[:, None]
        return end, torch.where(keep, rows.long(), -1)

    def _decode(self, rows: list[list[int]], stops: Sequence[str]) -> list[str]:
        with self._lock:
            texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
        return [cut_at(t, stops) for t in texts]

    def texts(self, rows: torch.Tensor, stops: Sequence[str] = ()) -> list[str]:
        """The text of each of the [N, G] rows."""
        end, _ = self.cut(rows)
        return self._decode([r[:e] for r, e in zip(rows.tolist(), end.tolist())], stops)

    def step_texts(self, trajectory: torch.Tensor, stops: Sequence[str] = ()) -> list[str]:
        """The text of every step of one row's [T, G] trajectory; a step whose tokens up to the
        first stop token did not change reuses the previous step's text (decoded once: most
        steps change a few tokens, often after the stop token)."""
        end, cut = self.cut(trajectory)
        changed = torch.ones(trajectory.shape[0], dtype=torch.bool)
        changed[1:] = (cut[1:] != cut[:-1]).any(dim=1)
        idx = changed.nonzero().flatten().tolist()
        decoded = self._decode([r[:e] for r, e in zip(cut[idx].tolist(), end[idx].tolist())], stops)
        owner = (torch.cumsum(changed.long(), 0) - 1).tolist()
        return [decoded[i] for i in owner]
