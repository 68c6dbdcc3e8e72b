"""Build the TCR testbed (``pretrained=embedded:testbed``) from the embedded checkpoint.

    python -m lm_eval_temporal.tiny.testbed --out lm_eval_temporal/tiny/testbed [--head_scale 0.25]

The testbed is the embedded model with its output head (``model.transformer.ff_out.weight``)
multiplied by ``head_scale``: every logit shrinks by that factor, so sampling it at temperature
T draws from the embedded model's distribution at temperature ``T / head_scale`` (0.9 / 0.25 =
3.6), while its argmax, and so its greedy decoding, is unchanged. That is the regime TCR needs
and no intermediate checkpoint of the embedded model's training run reached
(docs/tcr_evidence.md lists them): the answer the model holds over most steps is right more
often than the last one it samples. Every other tensor, the config and the tokenizer are the
embedded model's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HEAD = "model.transformer.ff_out.weight"

__all__ = ["HEAD", "build_testbed", "main"]


def build_testbed(out: str | Path, head_scale: float = 0.25) -> Path:
    import shutil

    from safetensors.torch import load_file, save_file

    from lm_eval_temporal.tiny import EMBEDDED_DIR

    if not 0 < head_scale:
        raise ValueError(f"head_scale must be > 0, got {head_scale}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = load_file(str(EMBEDDED_DIR / "model.safetensors"))
    state[HEAD] = (state[HEAD] * head_scale).contiguous()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(EMBEDDED_DIR / name, out / name)
    (out / "testbed.json").write_text(json.dumps({"built_from": "embedded", "head_scale": head_scale}) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--head_scale", type=float, default=0.25, help="factor on the output head's weights")
    a = ap.parse_args(argv)
    print(f"saved {build_testbed(a.out, a.head_scale)}")


if __name__ == "__main__":
    main()
