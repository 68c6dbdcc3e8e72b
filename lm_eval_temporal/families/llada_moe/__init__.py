"""The LLaDA-MoE family (inclusionAI/LLaDA-MoE-7B-A1B-Base / -Instruct): LLaDA's masked
diffusion and sampler (:mod:`lm_eval_temporal.sampler`, unchanged) on a mixture-of-experts
transformer, this package's weight-compatible :class:`.model.LLaDAMoEModelLM` (the hub's remote
code is written for transformers 4.x).

Recognised by ``architectures`` (``LLaDAMoEModelLM``: the hub's config.json says
``model_type: "llada"``, the dense model's) or by ``model_type: "lladamoe"`` (ZHZisZZ/dllm's
name, and what this package's class writes).

Mask token: ``mask_id``, else ``config.mask_token_id``, else the tokenizer's mask token, else
``<|mask|>`` of the vocabulary (id 156895 in the hub's tokenizer, which does not declare it as
its mask token; ZHZisZZ/dllm's ``get_tokenizer`` sets it the same way). ``<|role_end|>``, the
Instruct chat format's end of turn, also ends an answer.

Official defaults: those of ZHZisZZ/dllm's evaluation of LLaDA / LLaDA-MoE checkpoints
(``examples/llada/eval.sh`` with ``dllm/pipelines/llada/eval.py``, the pipeline its README names
for LLaDA-MoE): ``gen_length`` the task's ``max_gen_toks``, ``steps = gen_length`` (one token per
step), ``block_length = gen_length`` (one block), temperature 0, ``remasking=low_confidence``, no
guidance. Model arguments are LLaDA's and override them; ``prefix_cache`` is not offered (the
model keeps no key/value cache).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lm_eval_temporal.families import Family

__all__ = ["FAMILY", "MODEL_TYPE", "ARCHITECTURES", "MASK_TOKEN", "END_OF_TURN", "recognises", "load", "settings",
           "official_defaults"]

MODEL_TYPE = "lladamoe"
ARCHITECTURES = ("LLaDAMoEModelLM", "LLaDAMoEModel")
MASK_TOKEN, END_OF_TURN = "<|mask|>", "<|role_end|>"


def recognises(config: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's ``config.json`` (as a dict) is a LLaDA-MoE one."""
    return config.get("model_type") == MODEL_TYPE or any(a in ARCHITECTURES for a in config.get("architectures") or ())


def load(pretrained: str, config: Mapping[str, Any], *, revision: str | None, dtype: Any, device: Any,
         trust_remote_code: bool, peft: str | None, mask_id: int | None, compile: bool):
    """The family's loader for :func:`lm_eval_temporal.load_model` (``trust_remote_code`` only
    reaches the tokenizer: the model is always this package's)."""
    from transformers import AutoTokenizer

    from lm_eval_temporal import loading

    from .model import LLaDAMoEConfig, LLaDAMoEModelLM

    cfg = LLaDAMoEConfig.from_dict(dict(config))  # read as LLaDA-MoE whatever model_type it states
    model = LLaDAMoEModelLM.from_pretrained(pretrained, config=cfg, revision=revision, dtype=dtype)
    # With the config given: the hub's model_type "llada" would otherwise be read as dense LLaDA's.
    tokenizer = AutoTokenizer.from_pretrained(pretrained, config=cfg, revision=revision,
                                              trust_remote_code=trust_remote_code)
    vocab = tokenizer.get_vocab()
    if tokenizer.mask_token is None and MASK_TOKEN in vocab:
        tokenizer.mask_token = MASK_TOKEN
    model = loading.apply_adapter(model, peft)
    model.to(device)
    model.eval()
    if compile:
        loading.compile_blocks(model)
    return loading.LoadedModel(model=model, tokenizer=tokenizer,
                               mask_id=loading.mask_token(pretrained, cfg, tokenizer, mask_id),
                               eos_id=loading.eos_token(cfg, tokenizer), pad_id=loading.pad_token(cfg, tokenizer),
                               device=device, dtype=dtype, name=pretrained, family="llada_moe",
                               end_ids=(vocab[END_OF_TURN],) if END_OF_TURN in vocab else ())


def official_defaults(opts: Any, gen_kwargs: Mapping[str, Any]) -> dict[str, int]:
    """dllm's LLaDA-MoE evaluation schedule for a request: one block of ``gen_length`` (the
    model argument, else the task's ``max_gen_toks``), one token per step."""
    gen_length = opts.gen_length or int(gen_kwargs.get("max_gen_toks") or 256)
    return {"gen_length": gen_length, "steps": gen_length, "block_length": gen_length}


def settings(loaded: Any, opts: Any, gen_kwargs: Mapping[str, Any], defaults: Mapping[str, int]):
    """LLaDA's resolution (:func:`lm_eval_temporal.options.resolve_sampler`) over the official
    defaults: model arguments win, then ``defaults`` (an embedded model's), then dllm's."""
    from lm_eval_temporal.options import resolve_sampler

    return resolve_sampler(opts, dict(gen_kwargs), {**official_defaults(opts, gen_kwargs), **defaults})


def denoise(loaded: Any, input_ids: Any, attention_mask: Any, config: Any, *, seeds: Sequence[int] | None,
            capture: bool, step_callback=None, callback_gap: bool = False):
    """LLaDA's denoiser (:func:`lm_eval_temporal.families.llada.denoise`): the same sampler,
    per-row generators and capture."""
    from lm_eval_temporal.families.llada import denoise as llada_denoise

    return llada_denoise(loaded, input_ids, attention_mask, config, seeds=seeds, capture=capture,
                         step_callback=step_callback, callback_gap=callback_gap)


FAMILY = Family(
    name="llada_moe",
    recognises=recognises,
    load=load,
    settings=settings,
    denoise=denoise,
    model_args=frozenset({"gen_length", "steps", "block_length", "temperature", "cfg_scale", "remasking",
                          "suppress_eos", "parallel_threshold", "mask_id", "compile", "early_stop",
                          "mc_num", "mc_batch_size"}),
    supports_loglikelihood=True,
)
