"""Temporal Consistency Reinforcement (TCR): diffu-GRPO post-training with a negative-TSE reward.

- ``config``: :class:`TCRConfig`, YAML loading and ``--key value`` overrides
- ``data``: training prompts (GSM8K / SVAMP train, ``arith_chain`` and ``countdown`` generators)
- ``countdown``: the offline Countdown problem generator, disjoint from the test set
- ``rollout``: G sampled completions per prompt with per-step answers and commit steps
- ``rewards``: TRL-signature reward functions (-TSE, accuracy, format, confidence scoring rules)
- ``advantages``, ``loss``: the diffu-GRPO pieces
- ``policy``: the policy log-probs per ``estimator``: ``logprobs`` (d1's one-step) or
  ``trajectory`` (each token on the canvas of the step that committed it, K steps sampled)
- ``trainer``: :class:`TCRTrainer` (accelerate + peft LoRA); ``checkpoint``: checkpoint folders
  and RNG states; ``reporting``: trackers and per-round statistics
- ``run_from_cli``: the ``lm-eval-temporal tcr`` entry (in ``lm_eval_temporal.cli``)

Command line: ``lm-eval-temporal tcr --config examples/tcr_tiny_cpu.yaml --output_dir DIR``.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TCRConfig": "lm_eval_temporal.tcr.config",
    "ConfigError": "lm_eval_temporal.tcr.config",
    "load_config": "lm_eval_temporal.tcr.config",
    "TCRTrainer": "lm_eval_temporal.tcr.trainer",
    "run_from_cli": "lm_eval_temporal.cli",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):  # PEP 562: torch/peft/accelerate load only when used
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
