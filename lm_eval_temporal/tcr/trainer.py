"""Temporal Consistency Reinforcement: diffu-GRPO with a negative-TSE reward, on accelerate + peft LoRA.

One *round* = rollouts for ``gradient_accumulation_steps`` micro-batches per process, then
``num_iterations`` (mu) optimizer steps over them. Inner iteration j draws its estimator's noise
(one_step: prompt masks; trajectory: the scored denoising steps, see ``tcr.policy``) from its
own per-sample seeds; the "old" (policy at rollout time) and "ref" (adapter disabled) log-probs
of iteration j use exactly those seeds, so ratio and KL compare like with like. At j = 0 the
policy has not moved since the rollout, so the old log-probs are the current ones, detached
(ratio exactly 1). Checkpoints are taken between rounds; everything random is either derived
from ``(seed, round, iteration, rank, row)`` or restored with the RNG states, so a resumed run
reproduces the uninterrupted one.

Distribution (DDP / FSDP / DeepSpeed) is accelerate's: ``accelerate launch -m
lm_eval_temporal.cli tcr --config ...``. Each process draws its own prompts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lm_eval_temporal.config import TemporalConfig
from lm_eval_temporal.pipeline import TemporalPipeline
from lm_eval_temporal.tcr.advantages import group_advantages
from lm_eval_temporal.tcr.checkpoint import CHECKPOINTS, latest_checkpoint, prune, rng_state, set_rng_state
from lm_eval_temporal.tcr.config import ConfigError, TCRConfig
from lm_eval_temporal.tcr.data import PromptOrder, Problem, format_prompt, load_problems
from lm_eval_temporal.tcr.loss import grpo_loss
from lm_eval_temporal.tcr.policy import rollout_logprobs, token_weights
from lm_eval_temporal.tcr.reporting import METRICS_FILE, round_stats, trackers
from lm_eval_temporal.tcr.rewards import build_rewards, combine
from lm_eval_temporal.tcr.rollout import Rollout, rollout

__all__ = ["TCRTrainer", "derive_seed", "lora_target_regex"]

log = logging.getLogger(__name__)

DONE_FILE = "tcr_state.json"  # written next to the final adapter
# Config keys that may change between an interrupted run and its resumption without changing
# what is computed.
_RESUME_FREE = {"max_steps", "output_dir", "resume", "progress", "report_to", "save_steps", "save_total_limit",
                "num_threads", "data_dir"}


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any tuple of labels and numbers (stable across runs and platforms)."""
    h = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") & (2**63 - 1)


def lora_target_regex(modules: Sequence[str], include_head: bool = False) -> str:
    """peft ``target_modules`` regex: the named projections inside the transformer blocks only,
    since the LM head is also called ``ff_out`` (``model.transformer.ff_out``)."""
    alt = "|".join(sorted(set(modules)))
    pattern = rf"(.*\.)?transformer\.blocks\.\d+\.({alt})"
    if include_head:
        pattern = rf"(?:{pattern}|(.*\.)?transformer\.ff_out)"
    return pattern


class TCRTrainer:
    """Builds everything from a :class:`TCRConfig`; ``train()`` runs (or resumes) to ``max_steps``.

    ``loaded`` (an object like :class:`lm_eval_temporal.loading.LoadedModel`) and ``problems``
    replace the model and data the config names -- for tests and notebooks.
    """

    def __init__(self, cfg: TCRConfig, *, loaded: Any = None, problems: list[Problem] | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg.validate()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.output_dir = Path(cfg.output_dir).expanduser()
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision,
            cpu=cfg.cpu,
            log_with=trackers(cfg) or None,
            project_dir=str(self.output_dir),
        )
        acc = self.accelerator
        # One global seeding at start-up, for the LoRA initialisation; everything later draws
        # from explicitly seeded generators or from the checkpointed global state.
        set_seed(cfg.seed)
        if loaded is None:
            from lm_eval_temporal.loading import load_model

            from lm_eval_temporal.tiny import shipped_dir

            pretrained = str(shipped_dir(cfg.pretrained) or cfg.pretrained)
            loaded = load_model(
                pretrained,
                revision=cfg.revision,
                dtype=cfg.dtype,
                device=str(acc.device),
                trust_remote_code=cfg.trust_remote_code,
                mask_id=cfg.mask_id,
            )
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.mask_id = int(loaded.mask_id)

        model = loaded.model
        model.to(acc.device)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = self._add_lora(model)
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            self.trainable,
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
            weight_decay=cfg.weight_decay,
        )
        from transformers import get_scheduler

        # Not passed through accelerator.prepare: its wrapper steps the schedule once per
        # process, which would make the learning rate depend on the number of GPUs.
        self.scheduler = get_scheduler(
            cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.max_steps
        )
        self.model, self.optimizer = acc.prepare(model, optimizer)
        # Rollouts run through the prepared model, so that FSDP / ZeRO-3 gather their shards.
        self.pipeline = TemporalPipeline(
            dataclasses.replace(loaded, model=self.model),
            TemporalConfig(vote="none", cluster=cfg.cluster, tse_alpha=cfg.tse_alpha, tse_skip=cfg.tse_skip),
        )

        self.problems = problems if problems is not None else load_problems(
            cfg.dataset, data_dir=cfg.data_dir, limit=cfg.max_train_prompts, seed=cfg.seed
        )
        self.order = PromptOrder(len(self.problems), cfg.seed)
        self.reward_fns = build_rewards(cfg)
        self.step = 0
        self.metrics_path = self.output_dir / METRICS_FILE
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ setup helpers
    def _add_lora(self, model: torch.nn.Module) -> torch.nn.Module:
        from peft import LoraConfig, get_peft_model

        cfg = self.cfg
        lcfg = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=lora_target_regex(cfg.lora_target_modules, cfg.lora_include_head),
            bias="none",
        )
        peft_model = get_peft_model(model, lcfg)
        if cfg.lora_include_head:
            self._check_head_is_called(peft_model)
        return peft_model

    def _check_head_is_called(self, peft_model: torch.nn.Module) -> None:
        """A LoRA on the head only trains if the model calls the head *module*; a model that
        multiplies by its weight directly would silently ignore the adapter."""
        head = next((m for n, m in peft_model.named_modules() if n.endswith("transformer.ff_out")), None)
        called = []
        handle = head.register_forward_hook(lambda *_: called.append(True)) if head is not None else None
        with torch.no_grad():
            peft_model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=self.accelerator.device))
        if handle is not None:
            handle.remove()
        if not called:
            raise ConfigError(
                "lora_include_head=true, but this model computes its logits from the head's weight without "
                "calling the head module, so a LoRA adapter there would have no effect; set lora_include_head=false"
            )

    @property
    def policy(self) -> torch.nn.Module:
        """The peft model without distributed wrappers: for ``disable_adapter``, modes and saving.
        Forward passes always go through ``self.model``, so that FSDP / ZeRO-3 gather their shards."""
        return self.accelerator.unwrap_model(self.model)

    # ------------------------------------------------------------------ one round
    def _round_problems(self, rnd: int, micro: int) -> list[Problem]:
        cfg, acc = self.cfg, self.accelerator
        per_proc = cfg.gradient_accumulation_steps * cfg.prompts_per_batch
        start = rnd * acc.num_processes * per_proc + acc.process_index * per_proc + micro * cfg.prompts_per_batch
        return [self.problems[i] for i in self.order.indices(start, cfg.prompts_per_batch)]

    def _rollout(self, rnd: int, micro: int) -> Rollout:
        cfg, acc = self.cfg, self.accelerator
        probs = self._round_problems(rnd, micro)
        texts = [format_prompt(p.user_prompt, self.tokenizer, chat_template=cfg.chat_template, gen_prefix=cfg.prefix)
                 for p in probs]
        n = len(probs) * cfg.num_generations
        seeds = [derive_seed("rollout", cfg.seed, rnd, acc.process_index, micro, i) for i in range(n)]
        with acc.autocast():
            return rollout(self.pipeline, texts, [p.gold for p in probs], task=cfg.task, group_size=cfg.num_generations,
                           seeds=seeds, sampler=cfg.sampler, batch_size=cfg.rollout_batch_size)

    def _mask_seeds(self, rnd: int, it: int, micro: int, n: int) -> list[int]:
        return [derive_seed("mask", self.cfg.seed, rnd, it, self.accelerator.process_index, micro, i) for i in range(n)]

    def _logprobs(self, model: torch.nn.Module, ro: Rollout, seeds: list[int]) -> torch.Tensor:
        return rollout_logprobs(model, ro, seeds, self.cfg, mask_id=self.mask_id, device=self.accelerator.device)

    @torch.no_grad()
    def _reference_logprobs(self, rnd: int, micro: int, ro: Rollout) -> tuple[list, list]:
        """Old (iterations 1..mu-1; iteration 0 uses the live pass) and ref log-probs, each
        with its iteration's seeds. Computed before any update of the round."""
        cfg, acc = self.cfg, self.accelerator
        policy = self.policy
        was_training = policy.training
        policy.eval()  # no LoRA dropout: old/ref are fixed reference points
        old: list[torch.Tensor | None] = [None] * cfg.num_iterations
        ref: list[torch.Tensor | None] = [None] * cfg.num_iterations
        with acc.autocast():
            for j in range(cfg.num_iterations):
                seeds = self._mask_seeds(rnd, j, micro, len(ro))
                if j > 0:
                    old[j] = self._logprobs(self.model, ro, seeds)
                if cfg.beta > 0:
                    with policy.disable_adapter():
                        ref[j] = self._logprobs(self.model, ro, seeds)
        policy.train(was_training)
        return old, ref

    def _run_round(self, rnd: int, bar: Any) -> None:
        cfg, acc = self.cfg, self.accelerator
        ga = cfg.gradient_accumulation_steps
        self.model.train()
        self.policy.eval()  # sample without LoRA dropout
        micro = [self._rollout(rnd, m) for m in range(ga)]
        self.model.train()
        parts, totals, advs = [], [], []
        for ro in micro:
            tot, pt = combine(self.reward_fns, ro.prompts, ro.completions, **ro.reward_kwargs())
            totals.append(tot)
            parts.append(pt)
            advs.append(group_advantages(tot, ro.group_size, scale=cfg.scale_rewards).to(acc.device))
        stats = round_stats(acc, [r.name for r in self.reward_fns], micro, parts, totals)
        refs = [self._reference_logprobs(rnd, m, ro) for m, ro in enumerate(micro)]
        for j in range(cfg.num_iterations):
            if self.step >= cfg.max_steps:
                break
            acc_stats = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio_mean": 0.0}
            for m, ro in enumerate(micro):
                seeds = self._mask_seeds(rnd, j, m, len(ro))
                sync = contextlib.nullcontext() if m == ga - 1 else acc.no_sync(self.model)
                with sync:
                    logp = self._logprobs(self.model, ro, seeds)
                    old_j, ref_j = refs[m][0][j], refs[m][1][j]
                    weights = token_weights(ro, seeds, cfg)
                    out = grpo_loss(
                        logp,
                        logp.detach() if old_j is None else old_j,
                        ref_j,
                        advs[m],
                        ro.completion_mask.to(acc.device),
                        epsilon=cfg.epsilon,
                        beta=cfg.beta,
                        weights=None if weights is None else weights.to(acc.device),
                        normalization=cfg.loss_normalization,
                    )
                    acc.backward(out.loss / ga)
                acc_stats["loss"] += float(out.loss.detach()) / ga
                acc_stats["kl"] += out.kl / ga
                acc_stats["clip_fraction"] += out.clip_fraction / ga
                acc_stats["ratio_mean"] += out.ratio_mean / ga
            grad_norm = acc.clip_grad_norm_(self.trainable, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            loss_stats = acc.reduce(torch.tensor(list(acc_stats.values()), dtype=torch.float64, device=acc.device),
                                    reduction="mean")
            record = {
                "step": self.step,
                "round": rnd,
                "inner_iteration": j,
                "lr": lr,
                **{k: float(v) for k, v in zip(acc_stats, loss_stats)},
                "grad_norm": float(grad_norm) if grad_norm is not None else None,
                **stats,
                "elapsed_s": round(time.monotonic() - self._t0, 2),
            }
            self._log(record)
            bar.update(1)
            bar.set_postfix(reward=f"{stats['reward']:.3f}", tse=f"{stats['tse']:.3f}", acc=f"{stats['accuracy']:.2f}")

    # ------------------------------------------------------------------ logging
    def _log(self, record: dict[str, Any]) -> None:
        acc = self.accelerator
        if acc.is_main_process:
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        numeric = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if acc.trackers:
            acc.log(numeric, step=record["step"])

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoints/step-N``: adapter, optimizer, scheduler, step, RNG states."""
        acc = self.accelerator
        final = self.output_dir / CHECKPOINTS / f"step-{self.step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        self.policy.save_pretrained(str(tmp / "adapter"), is_main_process=acc.is_main_process)
        optim_state = self.optimizer.state_dict()
        if acc.is_main_process:
            torch.save(optim_state, tmp / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / f"rng_state_{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": self.step, "world_size": acc.num_processes, "config": self.cfg.to_dict()}
            (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            prune(self.output_dir, self.cfg.save_total_limit)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: str | Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        acc = self.accelerator
        path = Path(path)
        state = json.loads((path / "state.json").read_text())
        if state["world_size"] != acc.num_processes:
            raise RuntimeError(
                f"checkpoint {path} was written by {state['world_size']} process(es); resume with the same "
                f"number (now {acc.num_processes}) so that every process finds its data and RNG state"
            )
        changed = sorted(k for k, v in state["config"].items()
                         if k not in _RESUME_FREE and getattr(self.cfg, k, v) != v)
        if changed:
            log.warning("resuming %s with changed settings: %s", path, ", ".join(changed))
        # Loaded on the CPU: load_state_dict / Optimizer.load_state_dict copy onto each
        # parameter's device (and safetensors rejects names such as "cpu:0").
        weights = load_file(str(path / "adapter" / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(self.policy, weights)
        if getattr(result, "unexpected_keys", None):
            raise RuntimeError(f"checkpoint adapter does not fit this model: unexpected keys {result.unexpected_keys[:5]}")
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        set_rng_state(torch.load(path / f"rng_state_{acc.process_index}.pt", weights_only=False))
        self.step = int(state["step"])
        if acc.is_main_process and self.metrics_path.is_file():
            # Drop records past the checkpoint, so the file reads as one uninterrupted run.
            keep = [line for line in self.metrics_path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
            self.metrics_path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        acc.wait_for_everyone()

    def _resume_point(self) -> Path | None:
        r = self.cfg.resume
        if r == "never":
            return None
        if r == "auto":
            return latest_checkpoint(self.output_dir)
        return Path(r).expanduser()

    # ------------------------------------------------------------------ main loop
    def train(self, until_step: int | None = None) -> Path:
        """Train to ``max_steps`` (resuming per ``cfg.resume``) and save the adapter in
        ``output_dir``. ``until_step`` stops early, after the round that reaches it (for
        time-sliced jobs); the learning-rate schedule still follows ``max_steps``."""
        from tqdm import tqdm

        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "tcr_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        acc.wait_for_everyone()
        done = self.output_dir / DONE_FILE
        if cfg.resume != "never" and done.is_file() and json.loads(done.read_text()).get("step", 0) >= cfg.max_steps:
            log.info("%s already holds an adapter trained for %d steps; nothing to do (resume: never retrains)",
                     self.output_dir, cfg.max_steps)
            self.step = json.loads(done.read_text())["step"]
            return self.output_dir
        ckpt = self._resume_point()
        if ckpt is not None:
            self.load_checkpoint(ckpt)
            log.info("resumed from %s at step %d", ckpt, self.step)
        elif acc.is_main_process:
            # A fresh run owns its metrics file and completion marker.
            self.metrics_path.unlink(missing_ok=True)
            done.unlink(missing_ok=True)
        if acc.trackers == [] and acc.log_with:
            acc.init_trackers("tcr", config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                             for k, v in cfg.to_dict().items()})
        stop = min(cfg.max_steps, until_step) if until_step is not None else cfg.max_steps
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="tcr", disable=not (cfg.progress and acc.is_main_process),
                   dynamic_ncols=True)
        while self.step < stop:
            rnd = self.step // cfg.num_iterations
            self._run_round(rnd, bar)
            # Also at the end, so that raising max_steps later continues from here.
            if cfg.save_steps and (self.step % cfg.save_steps == 0 or self.step >= cfg.max_steps):
                self.save_checkpoint()
        bar.close()
        if self.step >= cfg.max_steps:
            self.save_adapter(self.output_dir)
            if acc.is_main_process:
                done.write_text(json.dumps({"step": self.step, "max_steps": cfg.max_steps}) + "\n")
        acc.end_training()
        return self.output_dir

    def save_adapter(self, directory: str | Path) -> Path:
        """The adapter in peft's layout, loadable with ``--model_args peft=DIR``."""
        acc = self.accelerator
        directory = Path(directory)
        acc.wait_for_everyone()
        self.policy.save_pretrained(str(directory), is_main_process=acc.is_main_process)
        acc.wait_for_everyone()
        return directory
