"""The temporal pipeline, free of lm-eval: prompts -> token ids -> sampler (captures every
step) -> text per step -> answer per step -> vote and TSE -> one :class:`TemporalRecord` per
row.

    from lm_eval_temporal import load_model
    from lm_eval_temporal.config import SamplerConfig, TemporalConfig
    from lm_eval_temporal.pipeline import TemporalPipeline

    pipe = TemporalPipeline(load_model("path/or/hub-id"), TemporalConfig(vote="exp", alpha=5))
    records = pipe(["Q:12+5-7=?"], SamplerConfig(gen_length=32, steps=32, block_length=8), task="gsm8k")
    records[0].vote, records[0].tse, records[0].answers

The lm-eval backend and the TCR rollouts both run it: :meth:`TemporalPipeline.sample` (the
forward passes, plus the per-step parsing early stop needs) and
:meth:`TemporalPipeline.finish` (decoding, parsing, vote, TSE; CPU only, so the backend runs it
on a worker thread while the next batch samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lm_eval_temporal import answers, early_stop, families, temporal
from lm_eval_temporal.config import SamplerConfig, TemporalConfig, horizon
from lm_eval_temporal.decode import StepDecoder, cut_at, encode_prompt, ends, left_pad
from lm_eval_temporal.loading import LoadedModel
from lm_eval_temporal.record import TemporalRecord

__all__ = ["Run", "Sampled", "TemporalPipeline", "make_record"]


@dataclass
class Run:
    """What :meth:`TemporalPipeline.run` produced for a list of prompts, rows in prompt order."""

    input_ids: torch.Tensor  # [N, P] left-padded prompts
    attention_mask: torch.Tensor  # [N, P] 1 = real token
    sequences: torch.Tensor  # [N, G] generated tokens
    commit_step: torch.Tensor | None  # [N, G] the step each token was committed at (masked diffusion only)
    records: list[TemporalRecord]


@dataclass
class Sampled:
    """What the forward passes of one batch produced (all on the CPU)."""

    sampler: SamplerConfig
    tasks: list[str]
    stops: list[list[str]]
    sequences: torch.Tensor  # [B, G] generated tokens
    trajectory: torch.Tensor | None  # [B, steps, G], None without capture
    commit_step: torch.Tensor | None  # [B, G] global step each position was committed at (with capture)
    steps_run: list[int]
    forward_passes: list[int]  # model forward passes per row (tokens per forward pass: tpf)
    tokens: list[int]  # valid output tokens per row: generated before its first end or pad token
    parsed: list[early_stop.RowSteps] | None = None  # steps parsed during sampling (early_stop=stable)


def make_record(
    step_answers: list[str | None],
    texts: list[str],
    cfg: TemporalConfig,
    *,
    task: str,
    steps: int,
    schedule_steps: int | None = None,
    keep_texts: bool = False,
) -> TemporalRecord:
    """Vote and TSE of one row from the answers and texts of the steps it ran (the last being
    the final output), both over its temporal horizon of ``steps`` steps
    (``config.horizon``; docs/algorithm.md, "The horizon T"). On a fixed schedule an
    early-stopped row ran part of it: the steps it did not run cast no vote, and for TSE they
    hold its final answer, which is what they would show (a stopped row commits every masked
    position, so every later step predicts its final output). ``schedule_steps``: the exact
    schedule's step count for these settings (default ``steps``), for ``steps_saved``."""
    n = len(step_answers)
    if not 1 <= n <= steps:
        raise ValueError(f"make_record: {n} steps run on a horizon of steps={steps} (expected 1 to {steps})")
    eq = answers.equivalence(task, cfg.clusters)
    vote = None
    if cfg.vote == "gated":
        vote = temporal.gated_vote(step_answers, window=cfg.gate_window, share=cfg.gate_share, alpha=cfg.alpha,
                                   equivalent=eq, total_steps=steps, tie=cfg.tie)
    elif cfg.vote != "none":
        vote = temporal.vote(step_answers + [None] * (steps - n), weighting=cfg.vote, alpha=cfg.alpha, equivalent=eq,
                             tie=cfg.tie)
    voted = vote is not None and vote.answer is not None
    tse = temporal.temporal_semantic_entropy(step_answers + [step_answers[-1]] * (steps - n), weighting="exp",
                                             alpha=cfg.tse_alpha, skip_ratio=cfg.tse_skip, equivalent=eq)
    gated = isinstance(vote, temporal.GatedVoteResult)
    return TemporalRecord(
        answer_task=task,
        steps=steps,
        schedule_steps=steps if schedule_steps is None else schedule_steps,
        answers=list(step_answers),
        final=step_answers[-1],
        vote=vote.answer if vote else None,
        vote_step=vote.step if voted else n - 1,
        method=cfg.vote,
        tse=tse,
        weights=temporal.step_weights(steps, cfg.weighting if cfg.vote != "none" else "fixed", cfg.alpha)[:n],
        final_text=texts[-1],
        response=texts[vote.step] if voted else texts[-1],
        step_texts=list(texts) if keep_texts else None,
        gate_kept_final=vote.kept_final if gated else None,
        gate_share=vote.gate_share if gated else None,
        protocol=cfg.protocol,
    )


class TemporalPipeline:
    """Temporal decoding of a loaded model (:func:`lm_eval_temporal.load_model`).

    ``config`` says what is done with the captured steps (vote, clusters, TSE, early stop);
    ``step_texts=True`` keeps every step's text in the records.
    """

    def __init__(self, model: LoadedModel, config: TemporalConfig | None = None, *, step_texts: bool = False):
        self.model = model
        self.family = families.get(model.family)
        self.config = config or TemporalConfig()
        self.keep_texts = step_texts
        # The paper's code decodes the whole canvas (special tokens skipped), cutting nothing at EOS.
        self.decoder = StepDecoder(model.tokenizer, [] if self.config.protocol == "paper" else model.stop_ids)
        self.pad_id = next(i for i in (model.pad_id, model.eos_id, 0) if i is not None)
        self.end_ids = torch.tensor(sorted({*model.stop_ids, self.pad_id}), dtype=torch.long)

    # ------------------------------------------------------------------ prompts
    def encode(self, text: str) -> list[int]:
        return encode_prompt(self.model.tokenizer, text)

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return left_pad(rows, self.pad_id)

    # ------------------------------------------------------------------ stages
    def sample(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sampler: SamplerConfig,
        *,
        tasks: Sequence[str],
        stops: Sequence[Sequence[str]] | None = None,
        seeds: Sequence[int] | None = None,
        capture: bool = True,
    ) -> Sampled:
        """The forward passes of one left-padded batch. ``tasks``: each row's answer parser;
        ``stops``: each row's stop strings; ``seeds``: one per row (used when sampling is random,
        so a row never depends on its batch)."""
        B = input_ids.shape[0]
        stops = [list(s) for s in stops] if stops is not None else [[] for _ in range(B)]
        stop = early_stop.policy(self.config, sampler, self.decoder, tasks, stops)
        out = self.family.denoise(self.model, input_ids, attention_mask, sampler, seeds=seeds, capture=capture,
                                  step_callback=stop.callback, callback_gap=stop.callback_gap)
        sequences = out.sequences[:, input_ids.shape[1]:].cpu()
        return Sampled(
            sampler=sampler,
            tasks=list(tasks),
            stops=stops,
            sequences=sequences,
            trajectory=out.trajectory,
            commit_step=out.commit_step,
            steps_run=out.steps_run.tolist(),
            forward_passes=out.forward_passes.tolist(),
            # Counted up to each row's end (EOS, end of turn) or padding, whatever the protocol
            # reads: the leaderboard's rule for tokens per forward pass.
            tokens=ends(sequences, self.end_ids).tolist(),
            parsed=stop.rows,
        )

    def final_texts(self, sampled: Sampled) -> list[str]:
        """The generated text of each row, ended at its stop token and stop strings."""
        return [cut_at(t, s) for t, s in zip(self.decoder.texts(sampled.sequences), sampled.stops)]

    def finish(self, sampled: Sampled) -> list[TemporalRecord]:
        """One record per row of a batch sampled with ``capture=True``."""
        if sampled.trajectory is None:
            raise ValueError("finish: the batch was sampled with capture=False (no steps to read)")
        finals = self.final_texts(sampled)
        records = []
        for b, final_text in enumerate(finals):
            n, task = sampled.steps_run[b], sampled.tasks[b]
            if sampled.parsed is not None:
                # The policy parses every step it sees: the steps the row ran.
                texts, step_answers = sampled.parsed[b].texts[:n], sampled.parsed[b].answers[:n]
            else:
                texts = self.decoder.step_texts(sampled.trajectory[b, :n], sampled.stops[b])
                step_answers = [None] * n
                for s, t in enumerate(texts[:-1]):
                    step_answers[s] = answers.extract_answer(t, task, self.config.protocol)
            texts[-1] = final_text  # the last capture is the final output
            step_answers[-1] = answers.extract_answer(final_text, task, self.config.protocol)
            record = make_record(step_answers, texts, self.config, task=task, steps=horizon(sampled.sampler, n),
                                 schedule_steps=sampled.sampler.steps, keep_texts=self.keep_texts)
            record.tokens, record.nfe = sampled.tokens[b], sampled.forward_passes[b]
            records.append(record)
        return records

    # ------------------------------------------------------------------ all at once
    def run(
        self,
        prompts: Sequence[str],
        sampler: SamplerConfig,
        task: str | Sequence[str] = "generic",
        *,
        stops: Sequence[Sequence[str]] | None = None,
        seeds: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> Run:
        """Sample and read ``prompts`` (texts), ``batch_size`` rows per sampler call (default
        all), keeping the tensors as well as the records. ``task`` names the answer parser (one
        for all prompts, or one per prompt)."""
        tasks = [task] * len(prompts) if isinstance(task, str) else list(task)
        if len(tasks) != len(prompts):
            raise ValueError(f"task: {len(tasks)} answer tasks for {len(prompts)} prompts")
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"seeds: {len(seeds)} seeds for {len(prompts)} prompts")
        ids, attn = self.pad([self.encode(p) for p in prompts])
        step = batch_size or len(prompts)
        sequences, commits, records = [], [], []
        for s in range(0, len(prompts), step):
            part = slice(s, s + step)
            sampled = self.sample(ids[part], attn[part], sampler, tasks=tasks[part],
                                  stops=None if stops is None else stops[part],
                                  seeds=None if seeds is None else seeds[part])
            sequences.append(sampled.sequences)
            commits.append(sampled.commit_step)
            records.extend(self.finish(sampled))
        commit_step = None if any(c is None for c in commits) else torch.cat(commits)
        return Run(ids, attn, torch.cat(sequences), commit_step, records)

    def __call__(self, prompts: Sequence[str], sampler: SamplerConfig, task: str | Sequence[str] = "generic",
                 **kwargs) -> list[TemporalRecord]:
        """The records of :meth:`run` (same arguments)."""
        return self.run(prompts, sampler, task, **kwargs).records
