"""Dream's decoding settings (the arguments of its ``diffusion_generate``), checked by the
package's one rule per field (:mod:`lm_eval_temporal.coerce`). Torch-free, so model arguments
are checked before any model work.

Official defaults: the quick start of Dream's README (github.com/HKUNLP/Dream, also the
Dream-v0 model cards): ``steps = max_new_tokens``, ``temperature=0.2``, ``top_p=0.95``,
``alg="entropy"``, ``alg_temp=0``; ``top_k`` unset and ``eps=1e-3`` are
``DreamGenerationConfig``'s. ``max_new_tokens`` (here ``gen_length``) is the task's
``max_gen_toks``. (ZHZisZZ/dllm's Dream evaluation uses the same rule with temperature 0.1,
top_p 0.9 for Instruct: pass them as model arguments to reproduce it.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lm_eval_temporal.coerce import check_fields, option

__all__ = ["ALGS", "OFFICIAL", "DreamSettings"]

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")
OFFICIAL = {"temperature": 0.2, "top_p": 0.95, "top_k": None, "alg": "entropy", "alg_temp": 0.0}


@dataclass(frozen=True)
class DreamSettings:
    """One run's settings of Dream's sampler (names as in ``diffusion_generate``, with
    ``gen_length`` for ``max_new_tokens``).

    ``steps`` forward passes, each committing a share of the still-masked positions by the
    timestep schedule ``linspace(1, eps, steps + 1)``: a fixed number of steps for every row
    (``fixed_schedule``), so the horizon T is ``steps``. ``steps`` may exceed ``gen_length``
    (then some steps commit nothing), as in the official code."""

    gen_length: int = option(lo=1)
    steps: int = option(lo=1)
    temperature: float = option(OFFICIAL["temperature"], lo=0.0)
    top_p: float | None = option(OFFICIAL["top_p"], lo=0.0, hi=1.0, lo_open=True)  # 1 or None: off
    top_k: int | None = option(OFFICIAL["top_k"], lo=1)  # None: off
    alg: str = option(OFFICIAL["alg"], choices=ALGS)
    alg_temp: float = option(OFFICIAL["alg_temp"], lo=0.0)  # 0: the most confident, > 0: sampled positions
    eps: float = option(1e-3, lo=0.0, hi=1.0, lo_open=True, hi_open=True)  # the schedule's last timestep

    fixed_schedule = True  # the pipeline's question: is the number of steps known before decoding?

    def __post_init__(self):
        # model arguments such as temperature=0 arrive as ints
        for name in ("temperature", "alg_temp", "top_p", "eps"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        check_fields(self)

    @property
    def max_steps(self) -> int:
        return self.steps

    @property
    def samples(self) -> bool:
        """Whether decoding draws random numbers (then the seed acts)."""
        return self.temperature > 0 or self.alg_temp > 0 or self.alg == "origin"

    def as_record(self) -> dict:
        return asdict(self)
