"""The embedded tiny LLaDA model and its ``arith_chain`` problems.

- ``EMBEDDED_DIR``: the shipped checkpoint (``config.json`` in LLaDA's layout,
  ``model.safetensors``, tokenizer files); it loads like any LLaDA checkpoint, e.g.
  ``lm_eval_temporal.load_model(str(EMBEDDED_DIR))`` or ``AutoModel.from_pretrained``.
- ``DEFAULT_GEN``: the decoding settings the embedded model is meant to be run with.
- ``arith``: the problem generator (``make_problem``, ``eval_docs``, ``training_stream``,
  ``prompt_text``); ``tokenizer``: the char/byte tokenizer builder; ``train``: the training
  script (``python -m lm_eval_temporal.tiny.train --out DIR``). A checkpoint is checked
  through the backend like any other: ``lm_eval --model llada_temporal --model_args
  pretrained=DIR,gen_length=32,steps=32,block_length=8 --tasks arith_chain`` (per level: ``benchmarks/voting_regimes.py --models DIR``).

Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EMBEDDED_DIR", "DEFAULT_GEN"]

EMBEDDED_DIR: Path = Path(__file__).resolve().parent / "checkpoint"

DEFAULT_GEN: dict[str, int] = dict(gen_length=32, steps=32, block_length=8)
