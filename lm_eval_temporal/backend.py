"""lm-eval backend ``llada_temporal``: a thin adapter over loading, sampler, answers and temporal.

request -> prompt ids -> sampler (captures every step) -> text per step -> answer per step
-> vote / TSE -> response (+ trace for our tasks) -> lm-eval metrics (``tasks.py``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.models.utils import Collator
from tqdm import tqdm

from lm_eval_temporal import answers, temporal, trace
from lm_eval_temporal.loading import LoadedModel, load_model
from lm_eval_temporal.options import EMBEDDED, BackendOptions, parse_options
from lm_eval_temporal.sampler import SamplerConfig, generate

log = logging.getLogger(__name__)

# Request task name fragments -> answer parser, for answer_task=auto on tasks that are not
# ours (ours name their parser in the document).
_TASK_HINTS = (("gsm8k", "gsm8k"), ("svamp", "svamp"), ("math", "math500"), ("countdown", "countdown"))


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def _row_seed(seed: int, *parts: str) -> int:
    """A per-request seed, so sampled rows never depend on what else is in the batch."""
    return zlib.crc32("\x1f".join((str(seed), *parts)).encode("utf-8", "surrogatepass"))


def _cut(text: str, stops: list[str]) -> str:
    for s in stops:
        if s:
            i = text.find(s)
            if i >= 0:
                text = text[:i]
    return text


@dataclass
class _RowSteps:
    """Per-step texts and answers of one row, filled while it is generated (early_stop=stable)."""

    texts: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    last: torch.Tensor | None = None  # the row's previous x0, cut at its first stop token


@dataclass
class _Batch:
    """What the forward passes of one batch produced, handed to :meth:`_finish_batch`."""

    chunk: list[tuple]
    tasks: list[str]
    marked: list[bool]
    capture: bool
    gen: torch.Tensor  # [B, G] generated tokens (CPU)
    trajectory: torch.Tensor | None  # [B, steps, G] (CPU) or None
    steps_run: list[int]
    steps: int
    rows: list[_RowSteps] | None = None  # per-step answers already parsed (early_stop=stable)


class LLaDATemporalLM(LM):
    """``lm_eval --model llada_temporal``: LLaDA decoding with temporal self-consistency voting."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.opts: BackendOptions = parse_options(kwargs)  # fails before any loading
        o = self.opts
        accelerator = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            accelerator = Accelerator()
            self._rank, self._world_size = accelerator.process_index, accelerator.num_processes
        self.accelerator = accelerator
        device = str(accelerator.device) if accelerator is not None else o.device
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            # lm-eval passes device="cuda:0" unless told otherwise, also on CPU-only machines.
            log.warning("device=%s requested but CUDA is not available; running on the CPU", device)
            device = "cpu"
        self.embedded = o.pretrained == EMBEDDED
        if self.embedded:
            from lm_eval_temporal.tiny import DEFAULT_GEN, EMBEDDED_DIR

            pretrained, self.default_gen = str(EMBEDDED_DIR), dict(DEFAULT_GEN)
        else:
            pretrained, self.default_gen = o.pretrained, {}
        self.lm: LoadedModel = load_model(
            pretrained,
            revision=o.revision,
            dtype=o.dtype,
            device=device,
            trust_remote_code=o.trust_remote_code,
            peft=o.peft,
            mask_id=o.mask_id,
        )
        self._device = self.lm.device
        tok = self.lm.tokenizer
        self.tokenizer = tok
        self.stop_ids = torch.tensor(self.lm.stop_ids, dtype=torch.long)
        self.max_length = getattr(self.lm.model.config, "max_sequence_length", None) or getattr(
            self.lm.model.config, "max_position_embeddings", None
        )
        self._tok_lock = threading.Lock()  # the finishing worker and the main thread decode
        self._trajectory_file = None
        if o.trajectory_path:
            path = Path(o.trajectory_path).expanduser()
            if self.world_size > 1:
                path = path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            # Append: one process may evaluate several task groups through separate calls.
            self._trajectory_file = path.open("a", encoding="utf-8")
            self.trajectory_file_path = path

    # ------------------------------------------------------------------ lm-eval plumbing
    @property
    def tokenizer_name(self) -> str:
        return self.lm.name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    def all_gather(self, tensor):
        return self.accelerator.gather(tensor) if self.accelerator else tensor

    def gather_object(self, obj, dst=0):
        if not self.accelerator:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def barrier(self) -> None:
        if self.accelerator:
            self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------ helpers
    def _encode(self, text: str) -> list[int]:
        bos = getattr(self.tokenizer, "bos_token", None)
        # Chat templates already write BOS into the text; do not add a second one.
        add_special = not (bos and text.startswith(bos))
        return self.tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def resolve_generation(self, gen_kwargs: dict[str, Any]) -> SamplerConfig:
        """Model args win; else the embedded model's defaults; else the task's max_gen_toks
        with the paper's ratios. gen_length is rounded up to a multiple of block_length and
        steps to a multiple of the number of blocks."""
        o, d = self.opts, self.default_gen
        gen_length = o.gen_length or d.get("gen_length") or int(gen_kwargs.get("max_gen_toks") or 256)
        block = o.block_length or d.get("block_length") or min(32, gen_length)
        block = min(block, gen_length)
        gen_length = _round_up(gen_length, block)
        blocks = gen_length // block
        steps = o.steps or d.get("steps") or max(1, gen_length // 2)
        steps = min(gen_length, _round_up(steps, blocks))
        if o.temperature is not None:
            temperature = o.temperature
        elif gen_kwargs.get("do_sample"):
            temperature = float(gen_kwargs.get("temperature") or 1.0)
        else:
            temperature = 0.0
        return SamplerConfig(gen_length, steps, block, temperature, o.cfg_scale, o.remasking, o.suppress_eos)

    def _answer_task(self, request: Instance) -> str:
        if self.opts.answer_task != "auto":
            return self.opts.answer_task
        marker = (request.doc or {}).get(trace.TRACE_KEY) if isinstance(request.doc, dict) else None
        if marker:
            return marker["task"]
        name = (request.task_name or "").lower()
        return next((parser for hint, parser in _TASK_HINTS if hint in name), "generic")

    def _cut_rows(self, token_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, G] rows -> (end [N], rows with every token from the first stop token on set to -1)."""
        stop = torch.isin(token_rows, self.stop_ids)
        G = token_rows.shape[1]
        end = torch.where(stop.any(dim=1), stop.int().argmax(dim=1), G)
        keep = torch.arange(G)[None, :] < end[:, None]
        return end, torch.where(keep, token_rows.long(), -1)

    def _texts(self, token_rows: torch.Tensor, stops: list[str]) -> list[str]:
        """Decode [N, G] rows, ending each at its first stop token and stop string."""
        end, _ = self._cut_rows(token_rows)
        cut = [r[:e] for r, e in zip(token_rows.tolist(), end.tolist())]
        with self._tok_lock:
            decoded = self.tokenizer.batch_decode(cut, skip_special_tokens=True)
        return [_cut(t, stops) for t in decoded]

    def _step_texts(self, traj: torch.Tensor, stops: list[str]) -> list[str]:
        """Text of every step of one row; a step whose tokens up to the first stop token did
        not change reuses the previous step's text (decoded once)."""
        end, cut = self._cut_rows(traj)
        changed = torch.ones(traj.shape[0], dtype=torch.bool)
        changed[1:] = (cut[1:] != cut[:-1]).any(dim=1)
        idx = changed.nonzero().flatten().tolist()
        rows = cut[idx].tolist()
        ends = end[idx].tolist()
        with self._tok_lock:
            decoded = self.tokenizer.batch_decode([r[:e] for r, e in zip(rows, ends)], skip_special_tokens=True)
        decoded = [_cut(t, stops) for t in decoded]
        owner = (torch.cumsum(changed.long(), 0) - 1).tolist()
        return [decoded[i] for i in owner]

    # ------------------------------------------------------------------ generate_until
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        o = self.opts
        items = []
        for req in requests:
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            settings = self.resolve_generation(gen_kwargs)
            ids = self._encode(context)
            if self.max_length and len(ids) + settings.gen_length > self.max_length:
                keep = self.max_length - settings.gen_length
                if keep < 1:
                    raise ValueError(
                        f"gen_length={settings.gen_length} leaves no room for a prompt within the "
                        f"model's max_sequence_length={self.max_length}"
                    )
                log.warning("prompt of %d tokens truncated from the left to %d", len(ids), keep)
                ids = ids[-keep:]
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            items.append((ids, settings.kwargs(), req, until))

        collator = Collator(items, sort_fn=lambda x: (-len(x[0]), x[2].args[0]), group_fn=lambda x: x[1], group_by="gen_kwargs")
        results: list[str] = []
        bar = tqdm(total=len(items), desc="llada_temporal", disable=disable_tqdm or self.rank != 0)

        def done(chunk: list[tuple], responses: list[str]) -> None:
            for (*_, req, _until), response in zip(chunk, responses):
                self.cache_hook.add_partial("generate_until", req.args, response)
            results.extend(responses)
            bar.update(len(chunk))

        # With overlap (default), decoding, parsing, voting and the trajectory record of batch
        # k run on one worker thread while the forward passes of batch k+1 run here (torch
        # releases the GIL inside its ops). At most one batch is in flight and batches finish
        # in order, so results, cache entries and the trajectory file keep their order.
        pending: tuple[list[tuple], Future] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llada_temporal") as worker:
            for chunk in collator.get_batched(n=o.batch_size):
                batch = self._run_batch(chunk)
                if pending is not None:
                    done(pending[0], pending[1].result())
                    pending = None
                if o.overlap:
                    pending = (chunk, worker.submit(self._finish_batch, batch))
                else:
                    done(chunk, self._finish_batch(batch))
            if pending is not None:
                done(pending[0], pending[1].result())
        bar.close()
        if self._trajectory_file:
            self._trajectory_file.flush()
        return collator.get_original(results)

    def _run_batch(self, chunk: list[tuple]) -> _Batch:
        """The forward passes of one batch (and, with early_stop=stable, the per-step parsing
        the stop rule needs)."""
        o = self.opts
        settings = SamplerConfig(**chunk[0][1])
        tasks = [self._answer_task(req) for _, _, req, _ in chunk]
        marked = [isinstance(req.doc, dict) and trace.TRACE_KEY in req.doc for _, _, req, _ in chunk]
        capture = o.vote != "none" or any(marked) or self._trajectory_file is not None
        P = max(len(ids) for ids, *_ in chunk)
        pad = self.lm.pad_id if self.lm.pad_id is not None else (self.lm.eos_id or 0)
        input_ids = torch.full((len(chunk), P), pad, dtype=torch.long)
        attn = torch.zeros((len(chunk), P), dtype=torch.long)
        for b, (ids, *_) in enumerate(chunk):
            input_ids[b, P - len(ids):] = torch.tensor(ids)
            attn[b, P - len(ids):] = 1
        generators = None
        if settings.temperature > 0 or settings.remasking == "random":
            generators = [
                torch.Generator(device=self._device).manual_seed(_row_seed(o.seed, req.args[0], json.dumps(req.args[1], sort_keys=True, default=str)))
                for _, _, req, _ in chunk
            ]
        rows: list[_RowSteps] = []
        stop_kwargs = self._early_stop(chunk, tasks, settings.steps, rows)
        out = generate(
            self.lm.model,
            input_ids.to(self._device),
            attn.to(self._device),
            **settings.kwargs(),
            mask_id=self.lm.mask_id,
            eos_id=self.lm.eos_id,
            generator=generators,
            capture=capture,
            **stop_kwargs,
        )
        return _Batch(
            chunk=chunk,
            tasks=tasks,
            marked=marked,
            capture=capture,
            gen=out.sequences[:, P:].cpu(),
            trajectory=out.trajectory,
            steps_run=out.steps_run.tolist(),
            steps=settings.steps,
            rows=rows or None,
        )

    def _finish_batch(self, batch: _Batch) -> list[str]:
        """Texts, answers, vote, TSE, trace and cache entries of a generated batch."""
        finals = self._texts(batch.gen, [])
        responses = []
        for b, (ids, _, req, until) in enumerate(batch.chunk):
            final_text = _cut(finals[b], until)
            response = final_text
            if batch.capture:
                n = batch.steps_run[b]
                if batch.rows is not None:
                    texts, step_answers = list(batch.rows[b].texts), list(batch.rows[b].answers)
                else:
                    texts, step_answers = self._step_texts(batch.trajectory[b, :n], until), None
                response = self._temporal(
                    req, batch.tasks[b], batch.marked[b], until, texts, final_text, step_answers, batch.steps
                )
            responses.append(response)
        return responses

    # ------------------------------------------------------------------ early stop
    def _early_stop(self, chunk: list[tuple], tasks: list[str], steps: int, rows: list[_RowSteps]) -> dict[str, Any]:
        """``generate`` keyword arguments for the early-stop policy (none: no callback at all)."""
        o = self.opts
        if o.early_stop == "none":
            return {}
        first = int(o.stop_min * steps)  # no row stops before this step
        if o.early_stop == "confidence":
            thresholds = o.stop_gap if len(o.stop_gap) == 3 else o.stop_gap * 3

            def by_gap(step: int, x0: torch.Tensor, still: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
                # Prophet-style: stop once the mean top-1/top-2 logit gap over the row's
                # still-masked positions clears the threshold of this stage of decoding.
                if step < first:
                    return None
                thr = thresholds[min(2, (3 * step) // steps)]
                n = still.sum(dim=1)
                mean = torch.where(still, gap, 0.0).sum(dim=1) / n.clamp(min=1)
                return (n > 0) & (mean >= thr)

            return {"step_callback": by_gap, "callback_gap": True}
        # stable: the running vote's winner has held for stop_window steps with stop_share.
        weighting = o.vote if o.vote in temporal.WEIGHTINGS else "exp"
        untils = [until for *_, until in chunk]
        votes = []
        for b in range(len(chunk)):
            eq = None if o.cluster == "exact" else partial(answers.equivalent, task=tasks[b])
            votes.append(temporal.RunningVote(steps, weighting, o.alpha, eq))
            rows.append(_RowSteps())
        done = [False] * len(chunk)

        def by_vote(step: int, x0: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
            x0 = x0.cpu()
            stop = torch.zeros(len(chunk), dtype=torch.bool)
            end, cut = self._cut_rows(x0)
            ends = end.tolist()
            live = [b for b in range(len(chunk)) if not done[b]]
            fresh = [b for b in live if rows[b].last is None or not torch.equal(cut[b], rows[b].last)]
            with self._tok_lock:
                texts = self.tokenizer.batch_decode([x0[b, : ends[b]].tolist() for b in fresh], skip_special_tokens=True)
            new = dict(zip(fresh, texts))
            for b in live:
                r = rows[b]
                if b in new:
                    text = _cut(new[b], untils[b])
                    r.last = cut[b].clone()
                    answer = answers.extract_answer(text, tasks[b])
                else:
                    text, answer = r.texts[-1], r.answers[-1]
                r.texts.append(text)
                r.answers.append(answer)
                votes[b].add(answer)
                v = votes[b]
                if step >= first and v.winner is not None and v.streak >= o.stop_window and v.share >= o.stop_share:
                    stop[b] = done[b] = True
            return stop

        return {"step_callback": by_vote}

    def _temporal(
        self,
        req: Instance,
        task: str,
        marked: bool,
        until: list[str],
        texts: list[str],
        final_text: str,
        step_answers: list[str | None] | None = None,
        T: int | None = None,
    ) -> str:
        """Vote, TSE, trace and trajectory record of one row from its per-step texts.

        ``texts`` (and ``step_answers`` when already parsed) cover the steps the row ran;
        ``T`` is the schedule's step count (more than ``len(texts)`` when early stop ended the
        row): weights are over the global step index of that schedule.
        """
        o = self.opts
        texts[-1] = final_text  # the last capture is the final output
        if step_answers is None:
            step_answers = [answers.extract_answer(t, task) for t in texts]
        else:
            step_answers[-1] = answers.extract_answer(final_text, task)
        eq = None if o.cluster == "exact" else partial(answers.equivalent, task=task)
        n = len(step_answers)
        T = T or n
        weighting = o.vote if o.vote in temporal.WEIGHTINGS else "exp"
        padded = step_answers + [None] * (T - n)  # steps never run cast no vote
        response = final_text
        vote = None
        if o.vote == "gated":
            vote = temporal.gated_vote(
                step_answers, window=o.gate_window, share=o.gate_share, alpha=o.alpha, equivalent=eq,
                total_steps=T,
            )
        elif o.vote != "none":
            vote = temporal.vote(padded, weighting=o.vote, alpha=o.alpha, equivalent=eq)
        if vote is not None and vote.answer is not None:
            response = texts[vote.step]
        tse = temporal.temporal_semantic_entropy(
            step_answers, weighting="exp", alpha=o.tse_alpha, skip_ratio=o.tse_skip, equivalent=eq
        )
        summary = {
            "v": 1,
            "answer_task": task,
            "steps": T,
            "answers": trace.run_length(step_answers),
            "final": step_answers[-1],
            "vote": vote.answer if vote else None,
            "vote_step": vote.step if vote and vote.answer is not None else n - 1,
            "method": o.vote,
            "tse": tse,
        }
        if o.early_stop != "none":
            summary["steps_run"] = n
        if self._trajectory_file is not None:
            record = {
                **summary,
                "task": req.task_name,
                "doc_id": req.doc_id,
                "gold": json.loads(req.doc["gold"]) if marked and "gold" in req.doc else None,
                "answers": step_answers,
                "weights": temporal.step_weights(T, weighting if o.vote != "none" else "fixed", o.alpha)[:n],
                "steps_run": n,
                "final_text": final_text,
                "response": response,
            }
            if o.vote == "gated":
                record["gate_kept_final"] = vote.kept_final
                record["gate_share"] = vote.gate_share
            if o.trajectory_text:
                record["step_texts"] = texts
            self._trajectory_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        return trace.attach(response, summary) if marked else response

    # ------------------------------------------------------------------ log-likelihood
    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """LLaDA's Monte-Carlo estimate: mc_num masked copies of the continuation (mask count
        uniform in 1..L, loss weighted by L / count); greedy = the continuation is what the
        sampler decodes from the context in len(continuation) steps."""
        out = []
        for req in tqdm(requests, desc="llada_temporal loglikelihood", disable=disable_tqdm or self.rank != 0):
            context, continuation = req.args
            ctx = self._encode(context)
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not cont:
                raise ValueError(f"empty continuation after tokenisation: {continuation!r}")
            ll = self._mc_loglikelihood(ctx, cont, _row_seed(self.opts.seed, context, continuation))
            greedy = self._is_greedy(ctx, cont)
            self.cache_hook.add_partial("loglikelihood", req.args, (ll, greedy))
            out.append((ll, greedy))
        return out

    @torch.no_grad()
    def _mc_loglikelihood(self, ctx: list[int], cont: list[int], seed: int) -> float:
        o = self.opts
        dev = self._device
        seq = torch.tensor(ctx + cont, dtype=torch.long, device=dev)
        P, L = len(ctx), len(cont)
        g = torch.Generator(device="cpu").manual_seed(seed)
        total, done = 0.0, 0
        while done < o.mc_num:
            n = min(o.mc_batch_size, o.mc_num - done)
            k = torch.randint(1, L + 1, (n,), generator=g)
            rank = torch.rand(n, L, generator=g).argsort(1).argsort(1)
            masked = (rank < k[:, None]).to(dev)
            x = seq.repeat(n, 1)
            x[:, P:] = torch.where(masked, self.lm.mask_id, x[:, P:])
            logits = self._logits(x, P)[:, P:]
            ce = F.cross_entropy(logits.float().transpose(1, 2), seq[P:].repeat(n, 1), reduction="none")
            total += ((ce * masked).sum(1) * (L / k.to(dev))).sum().item()
            done += n
        return -total / o.mc_num

    def _logits(self, x: torch.Tensor, P: int) -> torch.Tensor:
        logits = self.lm.model(x).logits
        if self.opts.cfg_scale > 0:
            un = x.clone()
            un[:, :P] = self.lm.mask_id
            u = self.lm.model(un).logits
            logits = u + (self.opts.cfg_scale + 1) * (logits - u)
        return logits

    def _is_greedy(self, ctx: list[int], cont: list[int]) -> bool:
        L = len(cont)
        out = generate(
            self.lm.model,
            torch.tensor([ctx], dtype=torch.long, device=self._device),
            gen_length=L,
            steps=L,
            block_length=L,
            cfg_scale=self.opts.cfg_scale,
            mask_id=self.lm.mask_id,
        )
        return out.sequences[0, len(ctx):].tolist() == cont

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "llada_temporal does not support loglikelihood_rolling (perplexity tasks): a masked "
            "diffusion model has no left-to-right token likelihood. Use generate_until or "
            "multiple-choice (loglikelihood) tasks."
        )
