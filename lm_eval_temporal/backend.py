"""lm-eval backend ``llada_temporal``: lm-eval's LM contract around the temporal pipeline.

requests -> token ids -> batches (lm-eval's Collator) -> :class:`~lm_eval_temporal.pipeline.
TemporalPipeline` -> one record per request -> response (+ trace for our tasks, see
:mod:`lm_eval_temporal.trace`) and trajectory line. Also the Monte-Carlo ``loglikelihood``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.models.utils import Collator
from tqdm import tqdm

import lm_eval_temporal
from lm_eval_temporal import answers, likelihood, run_info, run_record, trace
from lm_eval_temporal.advice import Request, RunAdvice
from lm_eval_temporal.config import SamplerConfig
from lm_eval_temporal.loading import load_model, pick_family, read_config
from lm_eval_temporal.options import BackendOptions, check_family, parse_options
from lm_eval_temporal.tiny import DEFAULT_GEN, shipped_dir
from lm_eval_temporal.pipeline import Sampled, TemporalPipeline
from lm_eval_temporal.trajectory import TrajectoryWriter, check_path

# Under lm-eval's logger tree, like its built-in backends, so the run's INFO lines show with lm-eval's.
log = logging.getLogger("lm_eval.models.llada_temporal")

# Request task name fragments -> answer parser, for answer_task=auto on tasks that are not
# ours (ours name their parser in the document).
_TASK_HINTS = (("gsm8k", "gsm8k"), ("svamp", "svamp"), ("math", "math500"), ("countdown", "countdown"))


def _row_seed(seed: int, *parts: str) -> int:
    """A per-request seed, so sampled rows never depend on what else is in the batch."""
    return zlib.crc32("\x1f".join((str(seed), *parts)).encode("utf-8", "surrogatepass"))


class LLaDATemporalLM(LM):
    """``lm_eval --model llada_temporal``: LLaDA decoding with temporal self-consistency voting.

    Public seams for tools: ``loaded`` (the model, tokenizer and token ids), ``pipeline`` (the
    :class:`TemporalPipeline` in use: assign ``TemporalPipeline(lm.loaded, other_config)`` to
    decode with other temporal settings without loading the weights again), ``batch_size``
    (settable), ``tok_encode`` and ``trajectory_file_path``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.opts: BackendOptions = parse_options(kwargs)  # fails before any loading
        o = self.opts
        path = check_path(o.trajectory_path, o.trajectory_mode) if o.trajectory_path else None
        self.accelerator = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator()
            self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
        device = str(self.accelerator.device) if self.accelerator is not None else o.device
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            # lm-eval passes device="cuda:0" unless told otherwise, also on CPU-only machines:
            # only a device the user chose deserves a warning.
            lm_eval_default = device == "cuda:0" and self.accelerator is None
            (log.debug if lm_eval_default else log.warning)(
                "device=%s requested but CUDA is not available; running on the CPU", device)
            device = "cpu"
        pretrained, self.default_gen = o.pretrained, {}
        shipped = shipped_dir(o.pretrained)
        if shipped is not None:
            pretrained, self.default_gen = str(shipped), dict(DEFAULT_GEN)
        # The family is read off the checkpoint's config before any weight is: arguments of
        # another family fail here.
        self.family = pick_family(o.family, read_config(pretrained, o.revision))
        check_family(o, self.family)
        self.loaded = load_model(pretrained, family=self.family.name, revision=o.revision, dtype=o.dtype,
                                 device=device, trust_remote_code=o.trust_remote_code, peft=o.peft, mask_id=o.mask_id,
                                 compile=o.compile)
        self.pipeline = TemporalPipeline(self.loaded, o.temporal, step_texts=o.trajectory_text)
        self.tokenizer = self.loaded.tokenizer
        self.batch_size = o.batch_size
        config = self.loaded.model.config
        self.max_length = getattr(config, "max_sequence_length", None) or getattr(config, "max_position_embeddings", None)
        if path is not None and self.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{self.rank}{path.suffix}")
        self.trajectory_file_path: Path | None = path
        # Hashed once: the results JSON, the cache check and the trajectory file all name it.
        self.checkpoint = run_info.checkpoint_identity(self.loaded.name, o.revision, o.peft)
        self._trajectory = (TrajectoryWriter(path, o.trajectory_mode, run_info.stamp(o, self.checkpoint))
                            if path else None)
        self._schedules: dict[SamplerConfig, run_info.ScheduleUse] = {}  # resolved settings -> rounding, tasks
        self._scorer_start, self._scorer_warned = answers.scorer_stats(), False
        self._advice = RunAdvice(o.protocol, embedded=shipped is not None)
        self.efficiency = run_info.Efficiency()
        self._tasks: dict[str, tuple[str | None, int | None]] = {}  # lm-eval task -> (answer parser, gen_length)
        log.info("llada_temporal: %s", run_info.summary(o, self.pipeline.config, self.default_gen, self.family))

    # ------------------------------------------------------------------ lm-eval plumbing
    @property
    def batch_size(self) -> int:
        """Requests per batch; set it to change the batch size of later calls."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"batch_size={value!r}: expected a positive integer")
        self._batch_size = value

    @property
    def tokenizer_name(self) -> str:
        return self.loaded.name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if shipped_dir(self.opts.pretrained) is not None and not getattr(self, "_warned_chat", False):
            self._warned_chat = True
            log.warning("--apply_chat_template with the embedded model: it was trained on bare prompts "
                        "(Q:...=?\nA:), so accuracy collapses; leave the flag out for it")
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    def tok_encode(self, string: str, **kwargs: Any) -> list[int]:
        """Prompt token ids, with the package's one BOS rule (lm-eval's standard method name)."""
        return self.pipeline.encode(string)

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

    # ------------------------------------------------------------------ what the run records
    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval writes into the results JSON (``run_info.model_info``), with the run's
        math-verify counts under ``scorer``. lm-eval asks for it once, after the task metrics
        have scored every document, so the counts (and the one warning when a check ran out of
        time) cover both the votes' answer clusters and the scoring."""
        info = run_info.model_info(self.opts, self.pipeline.config, self._schedules, self.checkpoint,
                                   device=str(self.loaded.device))
        info["llada_temporal"].update(family=self.family.name, efficiency=self.efficiency.as_record(**self._serving()),
                                      run_record=self._run_record())
        scorer = info["llada_temporal"]["scorer"] = answers.scorer_stats(since=self._scorer_start)
        if scorer["unknown"] and not self._scorer_warned:
            self._scorer_warned = True
            log.warning("llada_temporal: %d of %d math-verify checks had no verdict (%d timed out, %d of them waiting "
                        "for a free helper); each counted as not equivalent, so scores and vote clusters depend on "
                        "the machine's load: raise LM_EVAL_TEMPORAL_MATH_TIMEOUT (now %gs) or "
                        "LM_EVAL_TEMPORAL_MATH_WORKERS", scorer["unknown"], scorer["calls"], scorer["timeouts"],
                        scorer["wait_timeouts"], answers.MATH_TIMEOUT_S)
        return info

    def _serving(self) -> dict[str, Any]:
        """How the run was served, for the efficiency block of the run record."""
        device = self.loaded.device
        name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{platform.machine() or 'unknown'} {device.type}")
        return {"serving_backend": f"lm_eval_temporal {lm_eval_temporal.__version__} (lm-eval backend llada_temporal)",
                "backend_commit": f"code_sha256:{run_info.code_digest()}", "device_name": name,
                "device_count": self.world_size, "dtype": str(self.loaded.dtype).removeprefix("torch."),
                "quantization": "none", "batch_size": self.batch_size}

    def _run_record(self) -> dict[str, Any]:
        o, path = self.opts, self.trajectory_file_path
        if path is not None and self.world_size > 1:  # every rank's file; this rank's path names its own
            base = path.with_name(path.name.replace(f".rank{self.rank}", "", 1))
            files = [base.with_name(f"{base.stem}.rank{i}{base.suffix}") for i in range(self.world_size)]
        else:
            files = [path] if path is not None else []
        mode = (f"{self.family.name} diffusion decoding (remasking={o.remasking}, "
                f"parallel_threshold={o.parallel_threshold}, prefix_cache={o.prefix_cache}), vote={o.vote} "
                f"(alpha={o.alpha}), early_stop={o.early_stop}, protocol={o.protocol}")
        return run_record.build(tasks=self._tasks, protocol=o.protocol, decoding_mode=mode,
                                trajectory_files=[str(Path(f).resolve()) for f in files])

    def set_cache_hook(self, cache_hook) -> None:
        """lm-eval keys its ``--use_cache`` database by request only: one written under other
        output-changing settings (or weights, or code) is refused rather than replayed silently."""
        super().set_cache_hook(cache_hook)
        if getattr(cache_hook, "dbdict", None) is not None:
            run_info.check_cache(cache_hook.dbdict, self.opts, self.checkpoint)

    def _record_cache(self, request: str) -> None:
        """Stamp the cache with this run's settings for ``request`` before its first answer is stored."""
        if getattr(self.cache_hook, "dbdict", None) is not None:
            run_info.record_cache(self.cache_hook.dbdict, self.opts, self.checkpoint, request)

    # ------------------------------------------------------------------ requests -> settings
    def resolve_generation(self, gen_kwargs: dict[str, Any], task: str | None = None):
        """The decoding settings of a request (the family's: ``SamplerConfig`` for LLaDA); a
        schedule that had to be rounded is said once, and recorded with the run's settings and
        the tasks (``task``: lm-eval's task name of the request) that use it."""
        cfg, rounded = self.family.settings(self.loaded, self.opts, gen_kwargs, self.default_gen)
        new = cfg not in self._schedules
        use = self._schedules.setdefault(cfg, run_info.ScheduleUse(rounded))
        if task:
            use.tasks.add(task)
        if new:
            if rounded:
                log.warning("llada_temporal: schedule rounded: %s", "; ".join(rounded))
            log.info("llada_temporal: decoding %s with %s", self.family.name,
                     " ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items()))
        return cfg

    def _facts(self, request: Instance) -> Request:
        """What the run's checks (:mod:`lm_eval_temporal.advice`) need of a request."""
        return Request(request.task_name, self._answer_task(request), request.args[0])

    def _answer_task(self, request: Instance) -> str:
        if self.opts.answer_task != "auto":
            return self.opts.answer_task
        marker = trace.doc_marker(request.doc)
        if marker is not None:
            return marker.task
        name = (request.task_name or "").lower()
        return next((parser for hint, parser in _TASK_HINTS if hint in name), "generic")

    def _prompt_ids(self, context: str, gen_length: int) -> tuple[list[int], bool]:
        """The prompt's ids, cut from the left to fit ``max_sequence_length`` with the
        generation, and whether they had to be cut."""
        ids = self.pipeline.encode(context)
        if not self.max_length or len(ids) + gen_length <= self.max_length:
            return ids, False
        keep = self.max_length - gen_length
        if keep < 1:
            raise ValueError(f"gen_length={gen_length} leaves no room for a prompt within the "
                             f"model's max_sequence_length={self.max_length}")
        return ids[-keep:], True

    # ------------------------------------------------------------------ generate_until
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        start = time.perf_counter()  # the run record's timing boundary: this method, entry to exit
        try:
            return self._generate_until(requests, disable_tqdm)
        finally:
            self.efficiency.seconds += time.perf_counter() - start

    def _generate_until(self, requests: list[Instance], disable_tqdm: bool) -> list[str]:
        self._advice.before([self._facts(r) for r in requests])  # refuses or warns before any forward pass
        self._record_cache("generate_until")
        items, truncated = [], 0
        for req in requests:
            context, gen_kwargs = req.args
            settings = self.resolve_generation(dict(gen_kwargs or {}), req.task_name)
            until = (gen_kwargs or {}).get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            ids, cut = self._prompt_ids(context, settings.gen_length)
            self._tasks[req.task_name] = (self._answer_task(req), getattr(settings, "gen_length", None))
            truncated += cut
            items.append((ids, settings, req, until))
        if truncated:
            log.warning("llada_temporal: %d of %d prompts were longer than max_sequence_length=%s minus gen_length "
                        "and were truncated from the left", truncated, len(items), self.max_length)
        collator = Collator(items, sort_fn=lambda x: (-len(x[0]), x[2].args[0]), group_fn=lambda x: dataclasses.asdict(x[1]),
                            group_by="gen_kwargs")
        results: list[str] = []
        bar = tqdm(total=len(items), desc="llada_temporal", disable=disable_tqdm or self.rank != 0)

        def done(chunk: list[tuple], responses: list[str]) -> None:
            for (*_, req, _until), response in zip(chunk, responses):
                self.cache_hook.add_partial("generate_until", req.args, response)
                self._advice.count(self._facts(req), trace.split(response)[0])
            results.extend(responses)
            bar.update(len(chunk))

        # With overlap (default), decoding, parsing, voting and the trajectory record of batch
        # k run on one worker thread while the forward passes of batch k+1 run here (torch
        # releases the GIL inside its ops). At most one batch is in flight and batches finish
        # in order, so results, cache entries and the trajectory file keep their order.
        pending: tuple[list[tuple], Future] | None = None
        with bar, (self._trajectory or contextlib.nullcontext()) as out, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="llada_temporal") as worker:
            for chunk in collator.get_batched(n=self.batch_size):
                sampled = self._sample(chunk, capture=self._captures(chunk, out))
                self.efficiency.add(sampled.tokens, sampled.forward_passes,
                                    [len(ids) for ids, *_ in chunk])
                if pending is not None:
                    done(pending[0], pending[1].result())
                    pending = None
                if self.opts.overlap:
                    pending = (chunk, worker.submit(self._respond, chunk, sampled, out))
                else:
                    done(chunk, self._respond(chunk, sampled, out))
            if pending is not None:
                done(pending[0], pending[1].result())
        self._advice.after()
        return collator.get_original(results)

    def _captures(self, chunk: list[tuple], out) -> bool:
        """Whether a batch needs its steps: for a vote, our tasks' trace, or the trajectory file."""
        vote = self.pipeline.config.vote
        return vote != "none" or out is not None or any(trace.doc_marker(r.doc) for *_, r, _ in chunk)

    def _sample(self, chunk: list[tuple], capture: bool) -> Sampled:
        settings: SamplerConfig = chunk[0][1]
        ids, attn = self.pipeline.pad([ids for ids, *_ in chunk])
        seeds = [_row_seed(self.opts.seed, r.args[0], json.dumps(r.args[1], sort_keys=True, default=str))
                 for *_, r, _ in chunk]
        return self.pipeline.sample(ids, attn, settings, tasks=[self._answer_task(r) for *_, r, _ in chunk],
                                    stops=[until for *_, until in chunk], seeds=seeds, capture=capture)

    def _respond(self, chunk: list[tuple], sampled: Sampled, out) -> list[str]:
        """Responses of a sampled batch, writing its trajectory lines."""
        if sampled.trajectory is None:
            return self.pipeline.final_texts(sampled)
        responses = []
        for (*_, req, _), record in zip(chunk, self.pipeline.finish(sampled)):
            marker = trace.doc_marker(req.doc)
            if out is not None:
                out.write(dataclasses.replace(record, task=req.task_name, doc_id=req.doc_id,
                                              gold=marker.gold if marker else None))
            responses.append(trace.attach(record.response, record) if marker else record.response)
        if out is not None:
            out.flush()
        return responses

    # ------------------------------------------------------------------ log-likelihood
    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """LLaDA's Monte-Carlo estimate (see :mod:`lm_eval_temporal.likelihood`)."""
        if not self.family.supports_loglikelihood:
            raise NotImplementedError(f"llada_temporal: {self.family.name} models have no log-likelihood here "
                                      "(multiple-choice tasks); use generate_until tasks")
        self._record_cache("loglikelihood")
        o, out = self.opts, []
        for req in tqdm(requests, desc="llada_temporal loglikelihood", disable=disable_tqdm or self.rank != 0):
            context, continuation = req.args
            self._tasks.setdefault(req.task_name, (None, None))
            ctx = self.pipeline.encode(context)
            cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not cont:
                raise ValueError(f"empty continuation after tokenisation: {continuation!r}")
            ll = likelihood.mc_loglikelihood(self.loaded, ctx, cont, mc_num=o.mc_num, mc_batch_size=o.mc_batch_size,
                                             cfg_scale=o.cfg_scale, seed=_row_seed(o.seed, context, continuation))
            greedy = likelihood.is_greedy(self.loaded, ctx, cont, cfg_scale=o.cfg_scale)
            self.cache_hook.add_partial("loglikelihood", req.args, (ll, greedy))
            out.append((ll, greedy))
        return out

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "llada_temporal does not support loglikelihood_rolling (perplexity tasks): a masked "
            "diffusion model has no left-to-right token likelihood. Use generate_until or "
            "multiple-choice (loglikelihood) tasks."
        )
