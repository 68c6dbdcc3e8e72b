"""The settings objects of the temporal pipeline, torch-free.

- :class:`SamplerConfig`: one ``sampler.generate`` call (schedule, temperature, CFG, remasking),
  :func:`schedule_error`, the one check of a block schedule, :func:`combination_error`,
  the one check of settings that exclude or need each other, and :func:`horizon`, the one T
  of vote, TSE and early stop;
- :class:`TemporalConfig`: what is done with the captured steps (vote, clusters, TSE, early stop).

Torch-free, so option parsing (the backend's ``--model_args``, the TCR config) can validate
settings before torch or a model is loaded, with the same rules and words as the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

from lm_eval_temporal.coerce import check_fields, option

__all__ = [
    "REMASKING", "VOTES", "WEIGHTINGS", "CLUSTERS", "EARLY_STOPS", "DTYPES", "PROTOCOLS",
    "SamplerConfig", "TemporalConfig", "schedule_error", "combination_error", "early_stop_error", "horizon",
]

REMASKING = ("low_confidence", "random")
WEIGHTINGS = ("fixed", "linear", "exp")  # step weights of a vote (docs/algorithm.md)
VOTES = ("none", *WEIGHTINGS, "gated")
CLUSTERS = ("equivalence", "exact")
EARLY_STOPS = ("none", "stable", "confidence")
DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")  # model dtypes by name
PROTOCOLS = ("default", "paper")  # how answers are read and scored (answers/, docs/algorithm.md)


def schedule_error(gen_length: int | None, steps: int | None, block_length: int | None) -> str | None:
    """What is wrong with a block schedule, or None. Values left as None are not checked, so a
    partly given schedule (the rest resolved later) is checked as far as it goes."""
    g, s, b = gen_length, steps, block_length
    if g and b and g % b:
        return f"gen_length={g}, block_length={b}: gen_length must be a multiple of block_length"
    if g and s and s > g:
        return f"steps={s}: expected 1 <= steps <= gen_length={g} (each step commits at least one token)"
    if g and b and s and s % (g // b):
        return (f"steps={s}: expected a multiple of the number of blocks "
                f"gen_length/block_length = {g}/{b} = {g // b}")
    return None


def combination_error(remasking: str, cfg_scale: float, parallel_threshold: float | None,
                      prefix_cache: bool, early_stop: str = "none") -> str | None:
    """What is wrong with a combination of sampler settings (each valid alone), or None.
    ``early_stop`` (a :class:`TemporalConfig` setting) is checked against the schedule."""
    if parallel_threshold is not None and remasking != "low_confidence":
        return (f"parallel_threshold: needs remasking=low_confidence (a confidence to threshold), "
                f"not remasking={remasking!r}")
    if prefix_cache and cfg_scale > 0:
        return "prefix_cache: not available with cfg_scale > 0 (the unconditional copy has another prefix)"
    if prefix_cache and parallel_threshold is not None:
        return "prefix_cache: not available with parallel_threshold yet (rows leave blocks at different steps)"
    return early_stop_error(early_stop, fixed_schedule=parallel_threshold is None)


def early_stop_error(early_stop: str, fixed_schedule: bool, chooser: str = "parallel_threshold") -> str | None:
    """What is wrong with early stop on a schedule, or None. Its thresholds (``stop_min``, the
    confidence thirds, the running vote's weights) are fractions of the horizon T, which must
    be known before decoding: a fixed schedule. ``chooser``: what lets rows choose otherwise."""
    if early_stop != "none" and not fixed_schedule:
        return (f"early_stop={early_stop!r}: early_stop needs a fixed schedule: {chooser} lets each row choose its "
                f"number of steps (use early_stop=none with it)")
    return None


def horizon(settings, steps_run: int | None = None) -> int:
    """The temporal horizon T of a row that ran ``steps_run`` steps under ``settings`` (a
    family's decoding settings: :class:`SamplerConfig`, or any object with ``fixed_schedule``
    and ``steps``): the one step count of its vote weights, its TSE and the early-stop
    thresholds (docs/algorithm.md, "The horizon T"). A fixed schedule: ``steps``, known before
    decoding (the steps an early-stopped row did not run are part of it). A row that chose its
    own number of steps: the steps it ran, so its vote and TSE are over its own trajectory;
    known only after decoding."""
    if settings.fixed_schedule:
        return settings.steps
    if steps_run is None:
        raise ValueError(f"horizon: {type(settings).__name__} lets each row choose its number of steps, "
                         f"so T is known only after decoding (pass steps_run)")
    return steps_run


@dataclass(frozen=True)
class SamplerConfig:
    """The schedule and sampling settings of one ``sampler.generate`` call
    (``generate(model, ids, mask, config=config, ...)``)."""

    # The rules (metadata) are checked by option parsing on raw values and by validate() on a
    # constructed config.
    gen_length: int = option(lo=1)
    steps: int = option(lo=1)
    block_length: int = option(lo=1)
    temperature: float = option(0.0, lo=0.0)
    cfg_scale: float = option(0.0, lo=0.0)
    remasking: str = option("low_confidence", choices=REMASKING)
    suppress_eos: bool = False
    # Confidence-threshold parallel decoding (Fast-dLLM): commit every masked position of the
    # current block whose confidence reaches it (at least one per step); None = the exact
    # schedule. Approximate and off by default; each row then chooses its number of steps, and
    # ``steps`` only names the exact schedule that ``steps_saved`` counts against.
    parallel_threshold: float | None = option(None, lo=0.0, hi=1.0, lo_open=True)
    # Prefix KV cache (Fast-dLLM): at each block's first step the whole canvas runs once and
    # the keys/values of the prompt and the finished blocks are kept; the block's other steps
    # run the current block and everything after it only. Approximate (the cached prefix does
    # not see the rest of the canvas change), off by default; every generation position still
    # gets a prediction at every step, so capture, voting and TSE keep working.
    prefix_cache: bool = False

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def validate(self) -> SamplerConfig:
        """Raise ValueError naming the offending argument and what it accepts; return self."""
        check_fields(self)  # the fields' rules, which option parsing checks raw values against
        err = (schedule_error(self.gen_length, self.steps, self.block_length)
               or combination_error(self.remasking, self.cfg_scale, self.parallel_threshold, self.prefix_cache))
        if err:
            raise ValueError(err)
        return self

    @property
    def max_steps(self) -> int:
        """Forward passes a row can take: ``steps``, or with parallel decoding one per token at most."""
        return self.steps if self.parallel_threshold is None else self.gen_length

    @property
    def fixed_schedule(self) -> bool:
        """Whether the number of steps is fixed before decoding (the exact schedule: ``steps``,
        fewer only where early stop ends a row). With ``parallel_threshold`` each row chooses
        its own number of steps while it decodes."""
        return self.parallel_threshold is None


def _gap_items(value: object) -> list:
    """``stop_gap`` as given: ``8:5:3`` (or a sequence) -> its items; one or three of them."""
    items = list(value) if isinstance(value, (list, tuple)) else str(value).replace(" ", "").split(":")
    if len(items) not in (1, 3):
        raise ValueError("expected one number or three separated by ':' "
                         "(thresholds for the first, middle and last third of the steps, e.g. 8:5:3)")
    return items


@dataclass(frozen=True)
class TemporalConfig:
    """What the pipeline does with the answers captured at every step (docs/algorithm.md).

    - ``vote``: none (return the final answer), fixed / linear / exp step weights, or gated
      (keep the final answer when the last ``gate_window`` steps settled on it with
      ``gate_share`` of their weight, else the exp-weighted vote); ``alpha`` is exp's rate.
    - ``cluster``: ``equivalence`` groups answers the task's checker calls equal,
      ``exact`` groups equal strings only.
    - ``tse_alpha`` / ``tse_skip``: TSE's exp weights and the share of early steps it drops.
    - ``protocol``: ``default`` (this package's reading: text cut at the first end-of-answer
      token, answer extraction and equivalence of ``answers``) or ``paper`` (the paper's
      official evaluation exactly: the whole canvas decoded, the official parsers, exact
      clusters, ties to the answer seen first, official scoring).
    - ``early_stop``: none, ``stable`` (the running vote's winner held ``stop_window`` steps
      with ``stop_share`` of the weight) or ``confidence`` (mean top-1/top-2 logit gap over the
      still-masked positions >= ``stop_gap``, one threshold or three for the thirds of the
      schedule); no row stops before ``stop_min`` of the schedule.
    """

    vote: str = option("exp", choices=VOTES)
    alpha: float = option(5.0, lo=0.0)
    cluster: str = option("equivalence", choices=CLUSTERS)
    tse_alpha: float = option(12.8, lo=0.0)
    tse_skip: float = option(0.5, lo=0.0, hi=1.0, hi_open=True)
    gate_window: int = option(8, lo=1)
    gate_share: float = option(0.9, lo=0.0, hi=1.0, lo_open=True)
    early_stop: str = option("none", choices=EARLY_STOPS)
    stop_window: int = option(8, lo=1)
    stop_share: float = option(0.9, lo=0.0, hi=1.0, lo_open=True)
    stop_gap: tuple[float, ...] = option((8.0, 5.0, 3.0), lo=0.0, parse=_gap_items)
    stop_min: float = option(0.0, lo=0.0, hi=1.0, hi_open=True)
    protocol: str = option("default", choices=PROTOCOLS)

    @property
    def clusters(self) -> str:
        """How answers are grouped: the paper's protocol keys on the parsed values exactly."""
        return "exact" if self.protocol == "paper" else self.cluster

    @property
    def tie(self) -> str:
        """The vote's tie-break: the paper's code keeps the answer seen first."""
        return "first" if self.protocol == "paper" else "latest"

    @property
    def weighting(self) -> str:
        """The step weights of the vote (the gated vote and vote=none fall back to exp)."""
        return self.vote if self.vote in WEIGHTINGS else "exp"

    @property
    def gap_thresholds(self) -> tuple[float, float, float]:
        """``stop_gap`` as thresholds for the first, middle and last third of the steps."""
        g = self.stop_gap
        return (g[0], g[1], g[2]) if len(g) == 3 else (g[0],) * 3
