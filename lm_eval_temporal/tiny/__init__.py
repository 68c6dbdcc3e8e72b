"""The embedded tiny LLaDA model and its ``arith_chain`` problems.

- ``EMBEDDED_DIR``: the shipped checkpoint (``config.json`` in LLaDA's layout,
  ``model.safetensors``, tokenizer files); it loads like any LLaDA checkpoint, e.g.
  ``lm_eval_temporal.load_model(str(EMBEDDED_DIR))`` or ``AutoModel.from_pretrained``.
- ``TESTBED_DIR``: the TCR testbed (``pretrained=embedded:testbed``): the embedded model with
  its output head scaled by 0.25 (``python -m lm_eval_temporal.tiny.testbed``); sampled at 0.9
  its answers oscillate and the temporal majority beats its last answer (docs/tcr_evidence.md).
- ``TESTBED_EVAL``: the model arguments the testbed is evaluated with (sampled, as its TCR
  rollouts are; greedy decoding would be the embedded model's).
- ``SHIPPED`` / ``shipped_dir``: the ``pretrained`` names of the shipped checkpoints.
- ``DEFAULT_GEN``: the decoding settings both are meant to be run with.
- ``arith``: the problem generator (``make_problem``, ``eval_docs``, ``training_stream``,
  ``prompt_text``); ``tokenizer``: the char/byte tokenizer builder; ``train``: the training
  script (``python -m lm_eval_temporal.tiny.train --out DIR``). A checkpoint is checked
  through the backend like any other: ``lm_eval --model llada_temporal --model_args
  pretrained=DIR,gen_length=32,steps=32,block_length=8 --tasks arith_chain`` (per level: ``benchmarks/voting_regimes.py --models DIR``).

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EMBEDDED", "EMBEDDED_DIR", "TESTBED_DIR", "TESTBED_EVAL", "SHIPPED", "shipped_dir", "DEFAULT_GEN"]

EMBEDDED = "embedded"  # the `pretrained` default
EMBEDDED_DIR: Path = Path(__file__).resolve().parent / "checkpoint"
TESTBED_DIR: Path = Path(__file__).resolve().parent / "testbed"
SHIPPED: dict[str, Path] = {EMBEDDED: EMBEDDED_DIR, f"{EMBEDDED}:testbed": TESTBED_DIR}
TESTBED_EVAL: dict[str, object] = {"temperature": 0.9, "seed": 1234, "vote": "fixed"}


def shipped_dir(pretrained: str | None) -> Path | None:
    """The folder of the shipped checkpoint named ``pretrained`` (a key of ``SHIPPED``), else None."""
    return SHIPPED.get(pretrained) if isinstance(pretrained, str) else None

DEFAULT_GEN: dict[str, int] = dict(gen_length=32, steps=32, block_length=8)
