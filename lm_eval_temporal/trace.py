"""The wire format that carries a request's temporal summary from the backend to the metrics.

lm-eval hands a task nothing but the response string, and caches, logs and gathers across
ranks nothing else, so the summary rides at the end of the response behind a marker. Only
requests whose document was prepared by our tasks (``TRACE_KEY`` in the doc) get one, and
our ``process_results`` strips it before scoring; built-in tasks never see it.
"""

from __future__ import annotations

import json
from typing import Any

TRACE_KEY = "_temporal"  # doc field set by our tasks: {"task": answer task, "gold": ...}
MARKER = "\n<|temporal_trace|>"


def run_length(answers: list[str | None]) -> list[list[Any]]:
    """[a, a, b, None, None] -> [[a, 2], [b, 1], [None, 2]] (the samples log stays readable)."""
    out: list[list[Any]] = []
    for a in answers:
        if out and out[-1][0] == a:
            out[-1][1] += 1
        else:
            out.append([a, 1])
    return out


def expand_runs(runs: list[list[Any]]) -> list[str | None]:
    return [a for a, n in runs for _ in range(int(n))]


def attach(text: str, summary: dict[str, Any]) -> str:
    return text + MARKER + json.dumps(summary, ensure_ascii=False, separators=(",", ":"))


def split(response: str) -> tuple[str, dict[str, Any] | None]:
    """Return (text, summary); summary is None for responses without a trace."""
    head, sep, tail = response.rpartition(MARKER)
    if not sep:
        return response, None
    try:
        summary = json.loads(tail)
    except ValueError:
        return response, None
    return head, summary if isinstance(summary, dict) else None
