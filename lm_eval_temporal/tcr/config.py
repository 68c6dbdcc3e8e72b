"""TCR configuration: one flat dataclass, loaded from YAML and overridden by ``--key value``.

Flat on purpose: every key can be overridden from the command line with the same name it has
in the YAML file, and every error names the key, the value and what it accepts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lm_eval_temporal.coerce import check_names, coerce_fields, like, option
from lm_eval_temporal.config import SamplerConfig, TemporalConfig, schedule_error
from lm_eval_temporal.options import ANSWER_TASKS, BackendOptions, task_alias

__all__ = [
    "ConfigError",
    "TCRConfig",
    "load_config",
    "parse_overrides",
    "apply_overrides",
    "REWARDS",
    "SCORING_RULES",
    "DATASETS",
    "ESTIMATORS",
    "LOSS_NORMALIZATIONS",
]

REWARDS = ("tse", "accuracy", "format", "confidence")
SCORING_RULES = ("spherical", "brier", "logarithmic")
DATASETS = ("arith_chain", "gsm8k", "svamp", "countdown")
ESTIMATORS = ("one_step", "trajectory")  # tcr.policy
# tokens: d1's (sum over the micro-batch's kept tokens / their number); completion: each
# completion's mean, then the mean over completions (TRL's original GRPO). tcr.loss.
LOSS_NORMALIZATIONS = ("tokens", "completion")
MIXED_PRECISION = ("no", "fp16", "bf16")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
RESUME = ("auto", "never")  # or a checkpoint directory
REPORTERS = ("auto", "jsonl", "tensorboard", "wandb")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")
_SHARE = dict(lo=0.0, hi=1.0, hi_open=True)  # a share or probability in [0, 1)


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


@dataclass
class TCRConfig:
    """Every TCR setting. Defaults are the paper's (LLaDA-8B-Instruct, diffu-GRPO + TSE reward),
    except the model and data, which default to the embedded tiny model on ``arith_chain``.
    Among them: ``scale_rewards=False`` (advantages are rewards minus the group mean, not divided
    by the group's std, as in the paper), ``estimator="one_step"`` and
    ``loss_normalization="tokens"`` (d1's estimator and normalisation).
    Settings shared with evaluation take their rules from the backend's and sampler's classes."""

    # --- model
    pretrained: str = like(BackendOptions, "pretrained")  # "embedded", a local folder or a hub id
    revision: str | None = None
    dtype: str = like(BackendOptions, "dtype")
    trust_remote_code: bool = False
    mask_id: int | None = like(BackendOptions, "mask_id")
    gradient_checkpointing: bool = False
    # --- LoRA (only the transformer blocks; the LM head shares the name ff_out)
    lora_r: int = option(128, lo=1)
    lora_alpha: float = option(64.0, lo=0.0)
    lora_dropout: float = option(0.05, **_SHARE)
    lora_target_modules: list[str] = option(list(LORA_TARGETS), choices=LORA_TARGETS)
    lora_include_head: bool = False
    # --- data
    dataset: str = option("arith_chain", choices=DATASETS)
    answer_task: str | None = option(None, choices=ANSWER_TASKS[1:], parse=task_alias)  # None = the dataset's own
    data_dir: str | None = None  # None = $LM_EVAL_TEMPORAL_DATA, else the Hugging Face Hub
    max_train_prompts: int | None = option(None, lo=1)  # arith_chain, countdown: size of the generated pool (default 5000)
    chat_template: bool = False
    gen_prefix: str | None = None  # appended to every prompt; None = "<reasoning>" for gsm8k/svamp
    # --- rollouts
    num_generations: int = 6  # G, completions per prompt
    gen_length: int = like(SamplerConfig, "gen_length", 256)
    steps: int = like(SamplerConfig, "steps", 128)
    block_length: int = like(SamplerConfig, "block_length", 32)
    temperature: float = like(SamplerConfig, "temperature", 0.9)
    remasking: str = like(SamplerConfig, "remasking")
    cfg_scale: float = like(SamplerConfig, "cfg_scale")
    suppress_eos: bool = like(SamplerConfig, "suppress_eos")
    rollout_batch_size: int | None = option(None, lo=1)  # rows per sampler call; None = the whole micro-batch
    # --- objective
    prompts_per_batch: int = option(1, lo=1)  # prompts per micro-batch and process
    gradient_accumulation_steps: int = option(1, lo=1)
    num_iterations: int = option(12, lo=1)  # mu
    epsilon: float = option(0.5, lo=0.0, lo_open=True)
    beta: float = option(0.04, lo=0.0)
    p_mask_prompt: float = option(0.15, **_SHARE)  # one_step only
    # The paper (like Dr. GRPO) does not divide advantages by the group's std: True does.
    scale_rewards: bool = False
    # one_step: d1's (completion fully masked, one pass); trajectory: each token at the canvas
    # of the step that committed it, trajectory_steps steps drawn per completion (tcr.trajectory).
    estimator: str = option("one_step", choices=ESTIMATORS)
    trajectory_steps: int = option(4, lo=1)
    loss_normalization: str = option("tokens", choices=LOSS_NORMALIZATIONS)
    # Rows per log-prob forward (trajectory: (completion, step) pairs); None = all at once.
    logprob_batch_size: int | None = option(None, lo=1)
    # --- rewards
    rewards: list[str] = option(["tse"], choices=REWARDS)
    tse_weight: float = option(2.0, lo=0.0)
    accuracy_weight: float = option(1.0, lo=0.0)
    format_weight: float = option(1.0, lo=0.0)
    confidence_weight: float = option(1.0, lo=0.0)
    scoring_rule: str = option("spherical", choices=SCORING_RULES)
    tse_alpha: float = like(TemporalConfig, "tse_alpha")
    tse_skip: float = like(TemporalConfig, "tse_skip")
    cluster: str = like(TemporalConfig, "cluster")
    # --- optimisation
    learning_rate: float = option(3e-6, lo=0.0)
    adam_beta1: float = option(0.9, **_SHARE)
    adam_beta2: float = option(0.99, **_SHARE)
    adam_epsilon: float = 1e-8
    weight_decay: float = option(0.1, lo=0.0)
    max_grad_norm: float = option(0.2, lo=0.0)
    lr_scheduler: str = option("constant", choices=SCHEDULERS)
    warmup_steps: int = option(0, lo=0)
    max_steps: int = option(120, lo=1)  # optimizer steps; one rollout round every num_iterations steps
    mixed_precision: str = option("no", choices=MIXED_PRECISION)
    seed: int = 42
    # --- bookkeeping
    output_dir: str = "runs/tcr"
    save_steps: int = option(0, lo=0)  # 0 = no intermediate checkpoints; else a multiple of num_iterations
    save_total_limit: int | None = option(2, lo=1)
    resume: str = "auto"  # auto (latest checkpoint in output_dir), never, or a checkpoint folder
    report_to: list[str] = option(["auto"], choices=REPORTERS)
    cpu: bool = False  # force CPU even where accelerators exist
    num_threads: int | None = option(None, lo=1)
    progress: bool = True

    # ------------------------------------------------------------------ derived values
    @property
    def task(self) -> str:
        """The answer parser (arith_chain answers are GSM8K-style ``#### N`` lines)."""
        if self.answer_task:
            return self.answer_task
        return "gsm8k" if self.dataset == "arith_chain" else self.dataset

    @property
    def prefix(self) -> str:
        if self.gen_prefix is not None:
            return self.gen_prefix
        return "" if self.dataset == "arith_chain" else "<reasoning>"

    @property
    def sampler(self) -> SamplerConfig:
        """The rollouts' sampler settings."""
        return SamplerConfig(self.gen_length, self.steps, self.block_length, self.temperature, self.cfg_scale,
                             self.remasking, self.suppress_eos)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TCRConfig:
        """Every key's rule, then the cross-field checks; raises :class:`ConfigError` naming the keys."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        # The one-key rules (types, choices, bounds) are the fields'; this also normalises a
        # config built in code (math -> math500, 8 -> 8.0) the way a loaded one is.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in _coerce(values, "").items():
            setattr(self, name, value)
        need(bool(self.rewards), "rewards: give at least one of " + ", ".join(REWARDS))
        need(len(set(self.rewards)) == len(self.rewards), f"rewards={self.rewards}: each reward at most once")
        need(bool(self.lora_target_modules), "lora_target_modules: give at least one module name")
        need(self.num_generations >= 2, f"num_generations={self.num_generations}: a group needs at least 2 completions "
             "(advantages are rewards minus the group mean)")
        err = schedule_error(self.gen_length, self.steps, self.block_length)
        need(err is None, str(err))
        need(self.temperature > 0, f"temperature={self.temperature}: TCR needs sampled rollouts (temperature > 0)")
        # Checkpoints are taken between rollout rounds, so that a resumed run regenerates nothing.
        need(self.save_steps % self.num_iterations == 0,
             f"save_steps={self.save_steps} must be a multiple of num_iterations={self.num_iterations} "
             "(checkpoints are taken between rollout rounds)")
        need(self.resume in RESUME or Path(self.resume).expanduser().is_dir(),
             f"resume={self.resume!r}: expected auto, never or an existing checkpoint folder")
        need(bool(self.output_dir), "output_dir: expected a folder path")
        return self


def _coerce(values: dict[str, Any], where: str) -> dict[str, Any]:
    prefix = f"{where}: " if where else ""
    return coerce_fields(TCRConfig, values, where=prefix, unknown_label=prefix + "unknown key {quoted}",
                         error=ConfigError)


def _from_mapping(data: dict[str, Any], base: TCRConfig | None, where: str) -> TCRConfig:
    cfg = dataclasses.replace(base) if base is not None else TCRConfig()
    for key, value in _coerce(data, where).items():
        setattr(cfg, key, value)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TCRConfig:
    """Defaults, then the YAML file (if any), then ``--key value`` overrides; validated."""
    import yaml

    cfg = TCRConfig()
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of keys to values at the top level")
        cfg = _from_mapping(data, cfg, str(p))
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg.validate()


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """``["--lr", "1e-5", "--rewards=tse,accuracy"]`` -> ``{"lr": "1e-5", "rewards": "tse,accuracy"}``.

    A value may start with a single dash (``--cfg_scale -1``); a key without a value, or a
    token that is not a ``--key``, is an error."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"override {tok!r}: expected --key value (or --key=value)")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"override --{key}: missing value (write --{key} VALUE)")
            value = argv[i + 1]
            i += 2
        key = key.replace("-", "_")
        check_names(TCRConfig, [key], unknown_label="command line: unknown key {quoted}", error=ConfigError)
        if key in out:
            raise ConfigError(f"override --{key} given twice")
        out[key] = value
    return out


def apply_overrides(cfg: TCRConfig, argv: list[str]) -> TCRConfig:
    """A copy of ``cfg`` with the command-line overrides applied (not yet validated)."""
    return _from_mapping(parse_overrides(argv), cfg, "command line")
