"""Quick, reproducible quality check of a tiny checkpoint on the held-out ``arith_chain`` docs.

    python -m lm_eval_temporal.tiny.evaluate_quick [--pretrained DIR] [--n 300] [--seed 1234]

Decodes with the package's sampler (temperature 0, low_confidence; DEFAULT_GEN unless
overridden), parses every step's full predicted canvas with the ``gsm8k`` answer parser
(``#### N``) and scores it exactly as the ``arith_chain`` task does (``answers`` +
``temporal.sample_stats``: exp vote alpha 5, TSE over the second half of the steps with
exp weights alpha 12.8, numeric-equivalence clusters). Prints final_pass, ever_pass, the
vote accuracy and the mean TSE, overall and per level.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch

from lm_eval_temporal.tiny import arith

_TASK = "gsm8k"  # the answer parser arith_chain uses (``#### N``)

def _decode_steps(tokenizer, traj_row: torch.Tensor, stop_ids: set[int]) -> list[str]:
    texts = []
    for ids in traj_row.tolist():
        cut = len(ids)
        for i, t in enumerate(ids):
            if t in stop_ids:
                cut = i
                break
        texts.append(tokenizer.decode(ids[:cut], skip_special_tokens=True))
    return texts


def evaluate(pretrained=None, *, n=300, seed=1234, gen_length=None, steps=None, block_length=None,
             batch_size=64, threads=None, show=0) -> dict:
    from lm_eval_temporal import answers, temporal
    from lm_eval_temporal.answers import extract_answer
    from lm_eval_temporal.loading import load_model
    from lm_eval_temporal.sampler import generate
    from lm_eval_temporal.tiny import DEFAULT_GEN, EMBEDDED_DIR

    if threads:
        torch.set_num_threads(threads)
    gen = dict(DEFAULT_GEN)
    for k, v in (("gen_length", gen_length), ("steps", steps), ("block_length", block_length)):
        if v is not None:
            gen[k] = v
    lm = load_model(str(pretrained or EMBEDDED_DIR), device="cpu")
    tok = lm.tokenizer
    stop_ids = set(lm.stop_ids)  # the backend's stops
    docs = arith.eval_docs(n=n, seed=seed)
    rows = []
    t0 = time.monotonic()
    for i in range(0, len(docs), batch_size):
        chunk = docs[i : i + batch_size]
        enc = tok([arith.prompt_text(d["question"]) for d in chunk], add_special_tokens=False,
                  padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = generate(lm.model, enc.input_ids, enc.attention_mask, mask_id=lm.mask_id, eos_id=lm.eos_id,
                           temperature=0.0, remasking="low_confidence", capture=True, **gen)
        for d, traj in zip(chunk, out.trajectory):
            texts = _decode_steps(tok, traj, stop_ids)
            rows.append({"doc": d, "texts": texts, "answers": [extract_answer(t, _TASK) for t in texts]})
    wall = time.monotonic() - t0
    eq = partial(answers.equivalent, task=_TASK)
    keys = ("final_pass", "ever_pass", "vote_pass")
    tot = {k: 0 for k in keys}
    by_level: dict[int, dict[str, int]] = {}
    tses = []
    for r in rows:
        gold = answers.normalize_gold(r["doc"]["answer"], _TASK)
        st = temporal.sample_stats(r["answers"], gold_match=lambda a, g=gold: answers.is_correct(a, g, _TASK),
                                   equivalent=eq, alpha=5.0, tse_alpha=12.8, tse_skip_ratio=0.5)
        tses.append(st.tse)
        lvl = by_level.setdefault(r["doc"]["level"], {"n": 0, **{k: 0 for k in keys}})
        lvl["n"] += 1
        for k in keys:
            tot[k] += bool(getattr(st, k))
            lvl[k] += bool(getattr(st, k))
    N = len(rows)
    res = {
        "n": N,
        "final_pass": tot["final_pass"] / N,
        "ever_pass": tot["ever_pass"] / N,
        "vote_exp5": tot["vote_pass"] / N,
        "tse": sum(tses) / N,
        "by_level": {k: {m: round(v[m] / v["n"], 3) for m in keys} for k, v in sorted(by_level.items())},
        "gen": gen,
        "decode_wall_s": round(wall, 1),
    }
    for r in rows[:show]:
        print(r["doc"]["target"], "|", r["texts"][-1], "|", r["answers"])
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrained", default=None, help="checkpoint dir (default: the embedded one)")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--gen_length", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--block_length", type=int, default=None)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--show", type=int, default=0)
    a = ap.parse_args(argv)
    print(json.dumps(evaluate(**vars(a)), indent=2))


if __name__ == "__main__":
    main()
