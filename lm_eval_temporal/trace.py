"""The contract between our tasks and the backend: the document marker and the trace.

lm-eval hands a task nothing but the response string, and caches, logs and gathers across
ranks nothing else, so a request's :class:`~lm_eval_temporal.record.TemporalRecord` rides at
the end of the response behind a marker, in its compact form. Only requests whose document
was prepared by our tasks (``TRACE_KEY`` in the doc, read by :func:`doc_marker`) get one, and
our ``process_results`` strips it before scoring; built-in tasks never see it.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from lm_eval_temporal.record import RecordError, TemporalRecord

__all__ = ["TRACE_KEY", "MARKER", "DocMarker", "doc_marker", "attach", "split"]

TRACE_KEY = "_temporal"  # doc field set by our tasks: {"task": answer parser}
MARKER = "\n<|temporal_trace|>"


class DocMarker(NamedTuple):
    """What our tasks' documents tell the backend: the answer parser and the normalised gold."""

    task: str
    gold: Any


def doc_marker(doc: Any) -> DocMarker | None:
    """The marker of a document prepared by our tasks (None for any other document). The
    gold answer is stored as JSON in the doc's ``gold`` field (it is also lm-eval's target)."""
    if not isinstance(doc, dict) or TRACE_KEY not in doc:
        return None
    gold = doc.get("gold")
    return DocMarker(doc[TRACE_KEY]["task"], json.loads(gold) if isinstance(gold, str) else None)


def attach(text: str, record: TemporalRecord) -> str:
    return text + MARKER + json.dumps(record.to_trace(), ensure_ascii=False, separators=(",", ":"))


def split(response: str) -> tuple[str, TemporalRecord | None]:
    """Return (text, record); record is None for responses without a readable trace."""
    head, sep, tail = response.rpartition(MARKER)
    if not sep:
        return response, None
    try:
        return head, TemporalRecord.from_json(json.loads(tail), "trace")
    except (ValueError, RecordError):
        return response, None
