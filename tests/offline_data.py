"""The offline benchmark folder the tests read, in one place: ``$LM_EVAL_TEMPORAL_DATA`` when
set (as the package itself reads it), else ``../shared/data`` next to the checkout.

- ``DATA``: that folder (absolute: some tests run subprocesses in other folders);
- ``data_file(rel)``: a file in it, or a skip naming the file and the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "LM_EVAL_TEMPORAL_DATA"  # tasks.DATA_ENV, without importing the package here


def data_dir() -> Path:
    given = os.environ.get(DATA_ENV, "").strip()
    return (Path(given).expanduser() if given else Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


DATA = data_dir()


def data_file(rel: str) -> Path:
    """``DATA / rel``, or skip the test when it is missing."""
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"offline data not found: {path} is missing (set {DATA_ENV} to a folder laid out like "
                    "../shared/data, or build one with `lm-eval-temporal fetch-data DIR`)")
    return path
