"""The Dream family: Dream-org/Dream-v0-Base-7B and -Instruct-7B, apple/DiffuCoder-7B-* and
Dream-org/Dream-Coder-v0-Instruct-7B (``model_type: "Dream"``, ``architectures: ["DreamModel"]``):
masked diffusion initialised from Qwen2.5, with shifted logits and full attention.

- model: this package's weight-compatible :class:`~.model.DreamModel` (the hub's remote code is
  written for transformers 4.46), loaded without ``trust_remote_code``;
- tokenizer: the hub's ``DreamTokenizer`` is Qwen2's byte-level BPE; without
  ``trust_remote_code`` it is read by transformers' ``Qwen2Tokenizer`` from the same files;
- settings: :class:`~.settings.DreamSettings`, the official defaults overridden by model
  arguments of the same names (``gen_length`` for ``max_new_tokens``);
- denoise: :func:`~.sampler.generate`, the official ``diffusion_generate`` with per-step
  capture and one generator per row (a row never depends on its batch).

Importing this package imports neither torch nor transformers (model arguments are checked
against :class:`DreamSettings` before any of them loads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .settings import ALGS, OFFICIAL, DreamSettings

__all__ = ["MODEL_TYPE", "ARCHITECTURE", "FAMILY", "recognises", "load", "settings", "denoise", "DreamSettings",
           "ALGS", "OFFICIAL"]

MODEL_TYPE = "Dream"
ARCHITECTURE = "DreamModel"


def recognises(config: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's ``config.json`` (as a dict) is a Dream one."""
    return config.get("model_type") == MODEL_TYPE or ARCHITECTURE in (config.get("architectures") or ())


def _tokenizer(pretrained: str, revision: str | None, trust_remote_code: bool):
    from transformers import AutoTokenizer
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    if not trust_remote_code and get_tokenizer_config(pretrained, revision=revision).get("tokenizer_class") == "DreamTokenizer":
        from transformers import Qwen2Tokenizer

        return Qwen2Tokenizer.from_pretrained(pretrained, revision=revision)
    return AutoTokenizer.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)


def load(pretrained: str, config: Mapping[str, Any], *, revision: str | None, dtype, device, trust_remote_code: bool,
         peft: str | None, mask_id: int | None, compile: bool):
    """The family's loader for :func:`lm_eval_temporal.load_model`."""
    from lm_eval_temporal import loading

    from .model import DreamModel

    model = DreamModel.from_pretrained(pretrained, revision=revision, dtype=dtype)
    return loading.masked_model(pretrained, model, _tokenizer(pretrained, revision, trust_remote_code), family="dream",
                                peft=peft, device=device, dtype=dtype, compile=compile, mask_id=mask_id)


def settings(loaded: Any, opts: Any, gen_kwargs: Mapping[str, Any],
             defaults: Mapping[str, int]) -> tuple[DreamSettings, list[str]]:
    """Model arguments win, else the official defaults (:mod:`.settings`): ``gen_length`` the
    task's ``max_gen_toks`` (256 without one), ``steps = gen_length``. Nothing is rounded."""
    gen_length = opts.gen_length or defaults.get("gen_length") or int(gen_kwargs.get("max_gen_toks") or 256)
    chosen = {name: getattr(opts, name) for name in ("temperature", "top_p", "top_k", "alg", "alg_temp")}
    given = {name: value for name, value in chosen.items() if value is not None}
    return DreamSettings(gen_length=gen_length, steps=opts.steps or defaults.get("steps") or gen_length, **given), []


def denoise(loaded: Any, input_ids, attention_mask, config: DreamSettings, *, seeds: Sequence[int] | None,
            capture: bool, step_callback=None, callback_gap: bool = False):
    """Dream's sampler on a left-padded batch, one ``torch.Generator`` per row seeded from
    ``seeds`` when decoding draws random numbers."""
    from lm_eval_temporal.families import row_generators

    from .sampler import generate

    if step_callback is not None:
        raise ValueError("early_stop: not available for Dream models (use early_stop=none)")
    generators = row_generators(seeds, loaded.device, config.samples)
    return generate(loaded.model, input_ids.to(loaded.device), attention_mask.to(loaded.device), config,
                    mask_id=loaded.mask_id, generators=generators, capture=capture)


def _family():
    from lm_eval_temporal.families import Family

    return Family(name="dream", recognises=recognises, load=load, settings=settings, denoise=denoise,
                  model_args=frozenset({"gen_length", "steps", "temperature", "top_p", "top_k", "alg", "alg_temp",
                                        "mask_id", "compile"}))


FAMILY = _family()
