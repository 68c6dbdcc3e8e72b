"""TCR configuration: one flat dataclass, loaded from YAML and overridden by ``--key value``.

Flat on purpose: every key can be overridden from the command line with the same name it has
in the YAML file, and every error names the key, the value and what it accepts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lm_eval_temporal.sampler_config import REMASKING, SamplerConfig, schedule_error

__all__ = [
    "ConfigError",
    "TCRConfig",
    "load_config",
    "parse_overrides",
    "apply_overrides",
    "REWARDS",
    "SCORING_RULES",
    "DATASETS",
]

REWARDS = ("tse", "accuracy", "format", "confidence")
SCORING_RULES = ("spherical", "brier", "logarithmic")
DATASETS = ("arith_chain", "gsm8k", "svamp")
ANSWER_TASKS = ("gsm8k", "svamp", "math500", "countdown", "generic")
DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISION = ("no", "fp16", "bf16")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
CLUSTERS = ("equivalence", "exact")
RESUME = ("auto", "never")  # or a checkpoint directory
REPORTERS = ("auto", "jsonl", "tensorboard", "wandb")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")


class ConfigError(ValueError):
    """A config file or override is invalid; the message says which key and why."""


@dataclass
class TCRConfig:
    """Every TCR setting. Defaults are the paper's (LLaDA-8B-Instruct, diffu-GRPO + TSE reward),
    except the model and data, which default to the embedded tiny model on ``arith_chain``."""

    # --- model
    pretrained: str = "embedded"  # "embedded", a local folder or a hub id
    revision: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False
    mask_id: int | None = None
    gradient_checkpointing: bool = False
    # --- LoRA (only the transformer blocks; the LM head shares the name ff_out)
    lora_r: int = 128
    lora_alpha: float = 64.0
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lora_include_head: bool = False
    # --- data
    dataset: str = "arith_chain"
    answer_task: str | None = None  # answer parser; None = the dataset's own
    data_dir: str | None = None  # None = $LM_EVAL_TEMPORAL_DATA, else the Hugging Face Hub
    max_train_prompts: int | None = None  # arith_chain: size of the generated pool (default 5000)
    chat_template: bool = False
    gen_prefix: str | None = None  # appended to every prompt; None = "<reasoning>" for gsm8k/svamp
    # --- rollouts
    num_generations: int = 6  # G, completions per prompt
    gen_length: int = 256
    steps: int = 128
    block_length: int = 32
    temperature: float = 0.9
    remasking: str = "low_confidence"
    cfg_scale: float = 0.0
    suppress_eos: bool = False
    rollout_batch_size: int | None = None  # rows per sampler call; None = the whole micro-batch
    # --- objective
    prompts_per_batch: int = 1  # prompts per micro-batch and process
    gradient_accumulation_steps: int = 1
    num_iterations: int = 12  # mu
    epsilon: float = 0.5
    beta: float = 0.04
    p_mask_prompt: float = 0.15
    scale_rewards: bool = False  # divide advantages by the group's std
    logprob_batch_size: int | None = None  # rows per log-prob forward; None = the micro-batch
    # --- rewards
    rewards: list[str] = field(default_factory=lambda: ["tse"])
    tse_weight: float = 2.0
    accuracy_weight: float = 1.0
    format_weight: float = 1.0
    confidence_weight: float = 1.0
    scoring_rule: str = "spherical"
    tse_alpha: float = 12.8
    tse_skip: float = 0.5
    cluster: str = "equivalence"
    # --- optimisation
    learning_rate: float = 3e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.1
    max_grad_norm: float = 0.2
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    max_steps: int = 120  # optimizer steps; one rollout round every num_iterations steps
    mixed_precision: str = "no"
    seed: int = 42
    # --- bookkeeping
    output_dir: str = "runs/tcr"
    save_steps: int = 0  # 0 = no intermediate checkpoints; else a multiple of num_iterations
    save_total_limit: int | None = 2
    resume: str = "auto"  # auto (latest checkpoint in output_dir), never, or a checkpoint folder
    report_to: list[str] = field(default_factory=lambda: ["auto"])
    cpu: bool = False  # force CPU even where accelerators exist
    num_threads: int | None = None
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
        """Cross-field checks; raises :class:`ConfigError` naming the keys involved."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        for name, choices in (
            ("dtype", DTYPES),
            ("dataset", DATASETS),
            ("remasking", REMASKING),
            ("scoring_rule", SCORING_RULES),
            ("cluster", CLUSTERS),
            ("lr_scheduler", SCHEDULERS),
            ("mixed_precision", MIXED_PRECISION),
        ):
            v = getattr(self, name)
            need(v in choices, f"{name}={v!r}: expected one of {', '.join(choices)}")
        if self.answer_task is not None:
            need(self.answer_task in ANSWER_TASKS, f"answer_task={self.answer_task!r}: expected one of {', '.join(ANSWER_TASKS)}")
        for name, allowed in (("rewards", REWARDS), ("report_to", REPORTERS), ("lora_target_modules", LORA_TARGETS)):
            values = getattr(self, name)
            bad = [v for v in values if v not in allowed]
            need(not bad, f"{name}: unknown value(s) {', '.join(map(repr, bad))}; accepted: {', '.join(allowed)}")
        need(bool(self.rewards), "rewards: give at least one of " + ", ".join(REWARDS))
        need(len(set(self.rewards)) == len(self.rewards), f"rewards={self.rewards}: each reward at most once")
        need(bool(self.lora_target_modules), "lora_target_modules: give at least one module name")
        for name in ("lora_r", "num_generations", "gen_length", "steps", "block_length", "prompts_per_batch",
                     "gradient_accumulation_steps", "num_iterations", "max_steps"):
            need(getattr(self, name) >= 1, f"{name}={getattr(self, name)}: expected an integer >= 1")
        for name in ("rollout_batch_size", "logprob_batch_size", "max_train_prompts", "num_threads", "save_total_limit"):
            v = getattr(self, name)
            need(v is None or v >= 1, f"{name}={v}: expected an integer >= 1 or null")
        need(self.num_generations >= 2, f"num_generations={self.num_generations}: a group needs at least 2 completions "
             "(advantages are rewards minus the group mean)")
        err = schedule_error(self.gen_length, self.steps, self.block_length)
        need(err is None, str(err))
        need(self.temperature > 0, f"temperature={self.temperature}: TCR needs sampled rollouts (temperature > 0)")
        for name in ("cfg_scale", "beta", "tse_alpha", "learning_rate", "weight_decay", "max_grad_norm",
                     "tse_weight", "accuracy_weight", "format_weight", "confidence_weight", "lora_alpha"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)}: expected a number >= 0")
        need(self.epsilon > 0, f"epsilon={self.epsilon}: expected a number > 0")
        need(0 <= self.p_mask_prompt < 1, f"p_mask_prompt={self.p_mask_prompt}: expected a number in [0, 1)")
        need(0 <= self.tse_skip < 1, f"tse_skip={self.tse_skip}: expected a number in [0, 1)")
        need(0 <= self.lora_dropout < 1, f"lora_dropout={self.lora_dropout}: expected a number in [0, 1)")
        need(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam_beta1/adam_beta2: expected numbers in [0, 1)")
        need(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps}: expected an integer >= 0")
        need(self.save_steps >= 0, f"save_steps={self.save_steps}: expected an integer >= 0")
        # Checkpoints are taken between rollout rounds, so that a resumed run regenerates nothing.
        need(self.save_steps % self.num_iterations == 0,
             f"save_steps={self.save_steps} must be a multiple of num_iterations={self.num_iterations} "
             "(checkpoints are taken between rollout rounds)")
        need(self.resume in RESUME or Path(self.resume).expanduser().is_dir(),
             f"resume={self.resume!r}: expected auto, never or an existing checkpoint folder")
        need(bool(self.output_dir), "output_dir: expected a folder path")
        return self


_FIELDS = {f.name: f for f in fields(TCRConfig)}
_HINTS = typing.get_type_hints(TCRConfig)


def _kind(name: str) -> tuple[type, bool]:
    """(base type, optional) of a field, from its annotation."""
    hint = _HINTS[name]
    optional = False
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        optional = type(None) in args
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is list:
        return list, optional
    return hint, optional


def _unknown(name: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(_FIELDS), n=3)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"{where}: unknown key {name!r}.{hint} Accepted keys: {', '.join(_FIELDS)}")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NULL = ("null", "none", "~")


def _coerce(name: str, value: Any, where: str) -> Any:
    """Convert ``value`` (YAML-typed, or a command-line string) to the field's type."""
    base, optional = _kind(name)
    is_str = isinstance(value, str)
    # "" means null except for strings, where it is a legitimate value (gen_prefix: "").
    if value is None or (is_str and (value.strip().lower() in _NULL or (not value.strip() and base is not str))):
        if optional:
            return None
        raise ConfigError(f"{where}: {name} cannot be null")
    bad = ConfigError(f"{where}: {name}={value!r}: expected {_describe(base, optional)}")
    if base is bool:
        if isinstance(value, bool):
            return value
        if is_str and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if base is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if is_str:
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise bad
    if base is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            out = float(value)
        elif is_str:
            try:
                out = float(value.strip())  # also "1e-5", which YAML 1.1 reads as a string
            except ValueError:
                raise bad from None
        else:
            raise bad
        if out != out or out in (float("inf"), float("-inf")):
            raise bad
        return out
    if base is list:
        if is_str:
            s = value.strip()
            if s.startswith("[") and s.endswith("]"):
                s = s[1:-1]
            items = [x.strip().strip("'\"") for x in s.split(",")]
            return [x for x in items if x]
        if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
            return list(value)
        raise bad
    if base is str:
        if is_str:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise AssertionError(f"unhandled field type for {name}")  # pragma: no cover


def _describe(base: type, optional: bool) -> str:
    s = {bool: "true or false", int: "an integer", float: "a number", list: "a list (YAML list or a,b,c)",
         str: "a string"}[base]
    return s + (" or null" if optional else "")


def _from_mapping(data: dict[str, Any], base: TCRConfig | None, where: str) -> TCRConfig:
    cfg = dataclasses.replace(base) if base is not None else TCRConfig()
    for key, value in data.items():
        if key not in _FIELDS:
            raise _unknown(str(key), where)
        setattr(cfg, key, _coerce(key, value, where))
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
        if key not in _FIELDS:
            raise _unknown(key, "command line")
        if key in out:
            raise ConfigError(f"override --{key} given twice")
        out[key] = value
    return out


def apply_overrides(cfg: TCRConfig, argv: list[str]) -> TCRConfig:
    """A copy of ``cfg`` with the command-line overrides applied (not yet validated)."""
    return _from_mapping(parse_overrides(argv), cfg, "command line")
