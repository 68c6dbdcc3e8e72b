"""The LLaDA2.x family: inclusionAI/LLaDA2.0-mini and LLaDA2.1-mini (``model_type:
"llada2_moe"``, ``architectures: ["LLaDA2MoeModelLM"]``): block diffusion on a 16B MoE with
block-causal attention.

- model: this package's weight-compatible :class:`~.model.LLaDA2MoeModelLM` (the hub's remote
  code is written for transformers 4.x), loaded without ``trust_remote_code``;
- settings: :class:`~.settings.LLaDA2Settings`, the official defaults overridden by model
  arguments of the same names;
- denoise: :func:`~.sampler.generate`, the hub's block decoding with confidence ``threshold``
  and ``eos_early_stop``, with per-step capture.

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .settings import OFFICIAL, OFFICIAL_21, LLaDA2Settings, is_llada21

__all__ = ["MODEL_TYPE", "ARCHITECTURE", "FAMILY", "recognises", "load", "settings", "denoise", "LLaDA2Settings",
           "OFFICIAL", "OFFICIAL_21"]

MODEL_TYPE = "llada2_moe"
ARCHITECTURE = "LLaDA2MoeModelLM"


def recognises(config: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's ``config.json`` (as a dict) is a LLaDA2.x one."""
    return config.get("model_type") == MODEL_TYPE or ARCHITECTURE in (config.get("architectures") or ())


def load(pretrained: str, config: Mapping[str, Any], *, revision: str | None, dtype, device, trust_remote_code: bool,
         peft: str | None, mask_id: int | None, compile: bool):
    """The family's loader for :func:`lm_eval_temporal.load_model`."""
    from transformers import AutoTokenizer

    from lm_eval_temporal import loading

    from .model import LLaDA2MoeModelLM

    model = LLaDA2MoeModelLM.from_pretrained(pretrained, revision=revision, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
    return loading.masked_model(pretrained, model, tokenizer, family="llada2", peft=peft, device=device, dtype=dtype,
                                compile=compile, mask_id=mask_id)


def settings(loaded: Any, opts: Any, gen_kwargs: Mapping[str, Any],
             defaults: Mapping[str, int]) -> tuple[LLaDA2Settings, list[str]]:
    """Model arguments win, else the official defaults (:mod:`.settings`: 2.1's editing for a
    checkpoint named LLaDA2.1); ``gen_length`` the task's ``max_gen_toks`` (256 without one).
    Nothing is rounded."""
    gen_length = opts.gen_length or defaults.get("gen_length") or int(gen_kwargs.get("max_gen_toks") or 256)
    chosen = {name: getattr(opts, name) for name in ("steps", "block_length", "temperature", "threshold",
                                                     "eos_early_stop", "editing_threshold", "max_post_steps")}
    given = {name: value for name, value in chosen.items() if value is not None}
    if is_llada21(getattr(loaded, "name", None)):
        given = {**OFFICIAL_21, **given}
    return LLaDA2Settings(gen_length=gen_length, **given), []


def denoise(loaded: Any, input_ids, attention_mask, config: LLaDA2Settings, *, seeds: Sequence[int] | None,
            capture: bool, step_callback=None, callback_gap: bool = False):
    """LLaDA2's block decoding, row by row, one ``torch.Generator`` per row seeded from ``seeds``
    when decoding draws random numbers."""
    from lm_eval_temporal.families import row_generators

    from .sampler import generate

    if step_callback is not None:
        raise ValueError("early_stop: not available for LLaDA2 models (use early_stop=none)")
    generators = row_generators(seeds, loaded.device, config.samples)
    return generate(loaded.model, input_ids.to(loaded.device), attention_mask.to(loaded.device), config,
                    mask_id=loaded.mask_id, eos_id=loaded.eos_id, generators=generators, capture=capture)


def _family():
    from lm_eval_temporal.families import Family

    return Family(name="llada2", recognises=recognises, load=load, settings=settings, denoise=denoise,
                  model_args=frozenset({"gen_length", "steps", "block_length", "temperature", "threshold",
                                        "eos_early_stop", "editing_threshold", "max_post_steps", "mask_id",
                                        "compile"}))


FAMILY = _family()
