"""Scoring fidelity on real LLaDA-8B-Instruct generations (d1's files; see docs/scoring_fidelity.md).

Needs the offline data folder (``$LM_EVAL_TEMPORAL_DATA`` or ``../shared/data``); skipped
without it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "scoring_fidelity.py"


def _load():
    spec = importlib.util.spec_from_file_location("scoring_fidelity", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


fidelity = _load()
DATA = fidelity.default_data_dir()
HAVE_DATA = (DATA / "llada_generations").is_dir()


@pytest.fixture(scope="module")
def results():
    if not HAVE_DATA:
        pytest.skip(f"no generation files: {DATA / 'llada_generations'} is missing "
                    f"(set {fidelity.DATA_ENV} to a folder laid out like ../shared/data)")
    return fidelity.score(DATA)


@pytest.mark.parametrize("task", ["gsm8k", "math500", "countdown"])
def test_at_least_d1(results, task):
    r = results[task]
    assert r.n == {"gsm8k": 1130, "math500": 500, "countdown": 256}[task]
    # Our re-implementation of d1's rules reproduces d1's published numbers exactly ...
    assert round(r.pct(r.strict), 2) == fidelity.D1_REPORTED[task]
    # ... and our checker scores each set at least as high.
    assert r.pct(r.ours) >= fidelity.D1_REPORTED[task]


def test_every_disagreement_is_documented(results):
    doc = (SCRIPT.parent.parent / "docs" / "scoring_fidelity.md").read_text(encoding="utf-8")
    for r in results.values():
        for row in r.only_ours + r.only_strict:
            assert f"`{row['id']}`" in doc, f"{row['id']} is not in docs/scoring_fidelity.md"


def test_missing_data_folder_names_the_variable(tmp_path, capsys):
    assert fidelity.main(["--data", str(tmp_path)]) == 2
    assert fidelity.DATA_ENV in capsys.readouterr().err
