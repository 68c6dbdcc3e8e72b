"""``--model_args`` of the ``llada_temporal`` backend: parsing and validation.

Everything is checked before any model is loaded, and every error names the argument and
what it accepts. The sampler and temporal settings take their rules from
:class:`~lm_eval_temporal.config.SamplerConfig` and :class:`~lm_eval_temporal.config.TemporalConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from lm_eval_temporal.coerce import coerce_fields, like, option
from lm_eval_temporal.config import (CLUSTERS, DTYPES, EARLY_STOPS, VOTES, SamplerConfig, TemporalConfig,
                                     combination_error, schedule_error)
from lm_eval_temporal.errors import OptionError
from lm_eval_temporal.families import NAMES as FAMILIES
from lm_eval_temporal.families.diffusion_gemma.settings import DiffusionGemmaSettings
from lm_eval_temporal.families.dream.settings import DreamSettings
from lm_eval_temporal.families.llada2.settings import LLaDA2Settings
from lm_eval_temporal.tiny import EMBEDDED, SHIPPED

__all__ = ["BackendOptions", "OptionError", "parse_options", "resolve_sampler", "check_family", "task_alias",
           "EMBEDDED", "ANSWER_TASKS", "VOTES", "EARLY_STOPS", "CLUSTERS", "DTYPES"]

ANSWER_TASKS = ("auto", "gsm8k", "svamp", "math500", "countdown", "generic")


def _pretrained(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        *names, last = map(repr, SHIPPED)
        raise ValueError(f"expected a path, a hub id, {', '.join(names)} or {last}")
    return value


def task_alias(value: Any) -> Any:
    """An answer task's alias resolved (``math`` -> ``math500``) by the answers module, which
    holds the one alias table; anything else is returned as given for the choices check."""
    if not isinstance(value, str) or value.strip() == "auto":
        return value
    from lm_eval_temporal import answers  # on use: parsing options does not load the answer checkers

    try:
        return answers.canonical_task(value)
    except ValueError:
        return value


def _batch_size(value: Any) -> Any:
    # lm-eval's "auto" means "find the largest that fits"; diffusion batches are bounded by
    # the canvas, so auto picks a fixed, documented size.
    return 8 if str(value).strip().lower().startswith("auto") else value


@dataclass(frozen=True)
class BackendOptions:
    """Model arguments. Generation settings left as None are resolved per request (see
    ``resolve_generation`` in the backend): the embedded model's defaults, else the task's
    ``max_gen_toks`` with the paper's ratios (steps = gen_length / 2, block_length 32)."""

    pretrained: str = option(EMBEDDED, parse=_pretrained)
    revision: str | None = None
    dtype: str = option("auto", choices=DTYPES)
    device: str | None = None
    trust_remote_code: bool = False
    peft: str | None = None
    family: str = option("auto", choices=("auto", *FAMILIES))  # auto: recognised from the checkpoint
    compile: bool = False  # torch.compile the transformer blocks (faster on GPUs; first batch pays the compile)
    mask_id: int | None = option(None, lo=0)
    gen_length: int | None = like(SamplerConfig, "gen_length", None)
    steps: int | None = like(SamplerConfig, "steps", None)
    block_length: int | None = like(SamplerConfig, "block_length", None)
    temperature: float | None = like(SamplerConfig, "temperature", None)
    cfg_scale: float = like(SamplerConfig, "cfg_scale")
    remasking: str = like(SamplerConfig, "remasking")
    suppress_eos: bool = like(SamplerConfig, "suppress_eos")
    parallel_threshold: float | None = like(SamplerConfig, "parallel_threshold", None)
    prefix_cache: bool = False
    # DiffusionGemma's decoding settings (None: the checkpoint's generation_config)
    max_new_tokens: int | None = like(DiffusionGemmaSettings, "max_new_tokens", None)
    max_denoising_steps: int | None = like(DiffusionGemmaSettings, "max_denoising_steps", None)
    t_min: float | None = like(DiffusionGemmaSettings, "t_min", None)
    t_max: float | None = like(DiffusionGemmaSettings, "t_max", None)
    entropy_bound: float | None = like(DiffusionGemmaSettings, "entropy_bound", None)
    stability_threshold: int | None = like(DiffusionGemmaSettings, "stability_threshold", None)
    confidence_threshold: float | None = like(DiffusionGemmaSettings, "confidence_threshold", None)
    # Dream's decoding settings (None: its official defaults; gen_length, steps, temperature above)
    alg: str | None = like(DreamSettings, "alg", None)
    alg_temp: float | None = like(DreamSettings, "alg_temp", None)
    top_p: float | None = like(DreamSettings, "top_p", None)
    top_k: int | None = like(DreamSettings, "top_k", None)
    # LLaDA2.x's decoding settings (None: its official defaults)
    threshold: float | None = like(LLaDA2Settings, "threshold", None)
    eos_early_stop: bool | None = like(LLaDA2Settings, "eos_early_stop", None)
    editing_threshold: float | None = like(LLaDA2Settings, "editing_threshold", None)  # set: LLaDA2.1's editing
    max_post_steps: int | None = like(LLaDA2Settings, "max_post_steps", None)
    vote: str = like(TemporalConfig, "vote")
    alpha: float = like(TemporalConfig, "alpha")
    gate_window: int = like(TemporalConfig, "gate_window")
    gate_share: float = like(TemporalConfig, "gate_share")
    early_stop: str = like(TemporalConfig, "early_stop")
    stop_window: int = like(TemporalConfig, "stop_window")
    stop_share: float = like(TemporalConfig, "stop_share")
    stop_gap: tuple[float, ...] = like(TemporalConfig, "stop_gap")
    stop_min: float = like(TemporalConfig, "stop_min")
    cluster: str = like(TemporalConfig, "cluster")
    answer_task: str = option("auto", choices=ANSWER_TASKS, parse=task_alias)
    tse_alpha: float = like(TemporalConfig, "tse_alpha")
    tse_skip: float = like(TemporalConfig, "tse_skip")
    protocol: str = like(TemporalConfig, "protocol")
    batch_size: int = option(1, lo=1, parse=_batch_size)
    overlap: bool = True
    seed: int = 1234
    trajectory_path: str | None = None
    trajectory_text: bool = False
    trajectory_mode: str = option("new", choices=("new", "overwrite", "append"))
    mc_num: int = option(128, lo=1)
    mc_batch_size: int = option(32, lo=1)
    max_batch_size: int | None = option(None, lo=1)  # accepted because lm-eval always passes it; unused

    def changed(self) -> dict[str, Any]:
        """The arguments set away from their defaults (what a family may refuse)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}

    @property
    def temporal(self) -> TemporalConfig:
        """The vote, TSE and early-stop settings as one object."""
        return TemporalConfig(**{f.name: getattr(self, f.name) for f in fields(TemporalConfig)})


_NAMES = {f.name for f in fields(BackendOptions)}


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def resolve_sampler(opts: BackendOptions, gen_kwargs: dict[str, Any],
                    defaults: dict[str, int] | None = None) -> tuple[SamplerConfig, list[str]]:
    """The sampler settings of a request and what had to be rounded to get them.

    Model args win; else ``defaults`` (the embedded model's); else the task's ``max_gen_toks``
    with the paper's ratios (steps = gen_length / 2, block_length 32). block_length is cut to
    gen_length, gen_length rounded up to a multiple of block_length and steps up to a multiple
    of the number of blocks."""
    d = defaults or {}
    asked = opts.gen_length or d.get("gen_length") or int(gen_kwargs.get("max_gen_toks") or 256)
    chosen_block = opts.block_length or d.get("block_length")  # the paper's 32 is nobody's choice: cut unsaid
    block = min(chosen_block or 32, asked)
    gen_length = _round_up(asked, block)
    blocks = gen_length // block
    asked_steps = opts.steps or d.get("steps") or max(1, gen_length // 2)
    steps = min(gen_length, _round_up(asked_steps, blocks))
    rounded = []
    if chosen_block and block != chosen_block:
        rounded.append(f"block_length {chosen_block} -> {block} (at most gen_length={asked})")
    if gen_length != asked:
        rounded.append(f"gen_length {asked} -> {gen_length} (a multiple of block_length={block})")
    if steps != asked_steps:
        rounded.append(f"steps {asked_steps} -> {steps} (a multiple of the {blocks} blocks, at most gen_length)")
    if opts.temperature is not None:
        temperature = opts.temperature
    elif gen_kwargs.get("do_sample"):
        temperature = float(gen_kwargs.get("temperature") or 1.0)
    else:
        temperature = 0.0
    cfg = SamplerConfig(gen_length, steps, block, temperature, opts.cfg_scale, opts.remasking, opts.suppress_eos,
                        opts.parallel_threshold, opts.prefix_cache)
    return cfg, rounded


def parse_options(kwargs: dict[str, Any]) -> BackendOptions:
    """Validate raw ``--model_args`` values (strings or already-typed) into BackendOptions;
    :class:`~lm_eval_temporal.errors.OptionError` (a ValueError) names what is wrong."""
    try:
        return _parse_options(kwargs)
    except OptionError:
        raise
    except ValueError as exc:  # every rule's ValueError is the user's mistake: the lm_eval CLI prints it alone
        raise OptionError(str(exc)) from None


def _parse_options(kwargs: dict[str, Any]) -> BackendOptions:
    given = {k: v.strip() if isinstance(v, str) else v for k, v in kwargs.items()}
    # An empty value (``key=``) means "not given", except for pretrained, where it is a mistake;
    # unknown names are kept so that they are reported.
    given = {k: v for k, v in given.items() if k == "pretrained" or k not in _NAMES or v not in (None, "")}
    out = coerce_fields(BackendOptions, given, where="model argument ",
                        unknown_label="unknown model argument(s) for llada_temporal: {names}")
    opts = BackendOptions(**out)
    err = (schedule_error(opts.gen_length, opts.steps, opts.block_length)
           or combination_error(opts.remasking, opts.cfg_scale, opts.parallel_threshold, opts.prefix_cache,
                                opts.early_stop))
    if err:
        raise ValueError(f"model arguments: {err}")
    return opts


def check_family(opts: BackendOptions, family: Any) -> None:
    """Refuse model arguments set for another family than the checkpoint's ``family`` (a
    :class:`~lm_eval_temporal.families.Family`), before its weights are read."""
    from lm_eval_temporal.families import foreign_args

    foreign = foreign_args(family, opts.changed())
    if foreign:
        raise OptionError(f"model argument(s) {', '.join(foreign)}: not used by {family.name} models "
                          f"(pretrained={opts.pretrained!r}); {family.name} takes "
                          f"{', '.join(sorted(family.model_args))}")
