"""math-verify, the one unbounded step of answer checking, behind hard time bounds.

math-verify (sympy) can run for minutes or forever on some inputs, and its own timeout uses
SIGALRM, which only works on a main thread, while the backend and TCR call it from threads and
(daemonic) subprocesses. So it runs in one long-lived helper process per Python process
(started on first use, never per call) that is killed and restarted when a call exceeds
:data:`MATH_TIMEOUT_S` (``LM_EVAL_TEMPORAL_MATH_TIMEOUT``, seconds). Inputs that would make
sympy blow up (power towers, huge exponents/factorials, deep nesting) never reach it. If the
helper cannot be started, or ``LM_EVAL_TEMPORAL_MATH_WORKER=0`` is set, math-verify runs
in-process behind those screens. A timed-out comparison counts as "not equivalent".

The helper runs this very file, loaded by path rather than through the package (whose imports
may grow), so this module must import nothing but the standard library.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
from functools import lru_cache
from typing import Any

# math-verify per-comparison bound (seconds), overridable by environment.
MATH_TIMEOUT_S = float(os.environ.get("LM_EVAL_TEMPORAL_MATH_TIMEOUT", "5") or 5)
_WORKER_ENV = "LM_EVAL_TEMPORAL_MATH_WORKER"
_STARTUP_TIMEOUT_S = 120.0
# Extra wait past the helper's own (SIGALRM) timeout before it is killed and replaced.
_KILL_GRACE_S = 2.0

# Inputs sympy can spend unbounded time on: power towers, huge exponents, factorials or
# binomials of big numbers, deep nesting, long strings.
_SYMPY_DANGER = re.compile(
    r"\*\*|\^\s*\{?\s*[-+]?\d{4,}|\^\s*\{[^{}]*\^|\^\s*[\w.]+\s*\^|\d{4,}\s*!|\\binom\s*\{?\s*\d{4,}|\d{200,}"
)
_MAX_VERIFY_CHARS = 256
_MAX_VERIFY_DEPTH = 12


def _verifiable(s: str) -> bool:
    if len(s) > _MAX_VERIFY_CHARS or _SYMPY_DANGER.search(s):
        return False
    depth = deepest = 0
    for c in s:
        if c == "{" or c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == "}" or c == ")":
            depth -= 1
    return deepest <= _MAX_VERIFY_DEPTH


def _mv_parse(math_verify: Any, s: str, timeout: int | None) -> list:
    got = math_verify.parse("\\boxed{" + s + "}", parsing_timeout=timeout)
    if not got:
        got = math_verify.parse(s, parsing_timeout=timeout)
    return got


def _mv_equal(math_verify: Any, parse: Any, a: str, b: str, timeout: int | None) -> bool:
    pa, pb = parse(a), parse(b)
    if not pa or not pb:
        return False
    return bool(
        math_verify.verify(pa, pb, timeout_seconds=timeout) or math_verify.verify(pb, pa, timeout_seconds=timeout)
    )


_BOOT = (
    "import importlib.util as u, sys\n"
    "s = u.spec_from_file_location('_lm_eval_temporal_answers_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s); s.loader.exec_module(m); m._worker_main()\n"
)


def _worker_main() -> None:  # pragma: no cover - runs in the helper process
    """Serve ``[id, a, b, timeout]`` JSON lines on stdin with ``[id, bool]`` on stdout."""
    import logging
    import time

    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # stray prints from sympy must not corrupt the protocol
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    parent = os.getppid()

    def orphan_watch() -> None:
        # The parent kills us on timeout; if the parent itself dies, do not linger.
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=orphan_watch, daemon=True).start()
    import math_verify

    cache: dict[tuple[str, int], list] = {}

    def parse(s: str, t: int) -> list:
        key = (s, t)
        if key not in cache:
            if len(cache) > 8192:
                cache.clear()
            try:
                cache[key] = _mv_parse(math_verify, s, t)
            except BaseException:  # noqa: BLE001 - any failure is "unparsable"
                cache[key] = []
        return cache[key]

    out.write(b'["ready"]\n')
    for line in sys.stdin.buffer:
        try:
            rid, a, b, t = json.loads(line)
            t = max(1, int(math.ceil(t)))
        except Exception:  # noqa: BLE001
            continue
        try:
            r = _mv_equal(math_verify, lambda s: parse(s, t), a, b, t)
        except BaseException:  # noqa: BLE001
            r = None
        out.write(json.dumps([rid, r]).encode() + b"\n")


class _MathWorker:
    """One long-lived math-verify helper process per Python process (see module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue | None = None
        self._next = 0
        self._start_failures = 0
        self.timeouts = 0
        self._owner = os.getpid()
        self.disabled = os.environ.get(_WORKER_ENV, "1").strip().lower() in ("0", "false", "no", "off")

    def _start(self) -> bool:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C meant for the parent must not kill it mid-call
            )
        except (OSError, ValueError):
            self._failed_start()
            return False
        lines: queue.Queue = queue.Queue()

        def pump(stream: Any = proc.stdout) -> None:
            for raw in stream:
                lines.put(raw)
            lines.put(None)

        threading.Thread(target=pump, daemon=True, name="lm_eval_temporal-math-reader").start()
        try:
            ready = lines.get(timeout=_STARTUP_TIMEOUT_S)
        except queue.Empty:
            ready = None
        if not ready or json.loads(ready) != ["ready"]:
            _kill(proc)
            self._failed_start()
            return False
        self._proc, self._lines = proc, lines
        return True

    def _failed_start(self) -> None:
        self._start_failures += 1
        if self._start_failures >= 3:
            self.disabled = True  # e.g. no usable sys.executable: fall back to in-process

    def _stop(self) -> None:
        if self._proc is not None:
            _kill(self._proc)
        self._proc, self._lines = None, None

    def equal(self, a: str, b: str, timeout: float) -> bool | None:
        """math-verify equivalence in the helper; None when it timed out or is unavailable."""
        with self._lock:
            if self.disabled:
                return None
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                if not self._start():
                    return None
            assert self._proc is not None and self._lines is not None
            self._next += 1
            rid = self._next
            try:
                self._proc.stdin.write(json.dumps([rid, a, b, timeout]).encode() + b"\n")
                self._proc.stdin.flush()
            except (OSError, ValueError):
                self._stop()
                return None
            # The helper's own SIGALRM timeout usually answers first; this is the hard bound
            # for work SIGALRM cannot interrupt.
            deadline = timeout + _KILL_GRACE_S
            while True:
                try:
                    raw = self._lines.get(timeout=deadline)
                except queue.Empty:
                    self.timeouts += 1
                    self._stop()
                    return None
                if raw is None:  # helper died (e.g. out of memory)
                    self._stop()
                    return None
                try:
                    got_id, result = json.loads(raw)
                except ValueError:
                    continue
                if got_id == rid:
                    return None if result is None else bool(result)

    def close(self) -> None:
        if self._owner != os.getpid():  # a forked child must not kill its parent's helper
            return
        with self._lock:
            self._stop()


def _kill(proc: subprocess.Popen) -> None:
    try:
        proc.kill()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


_WORKER = _MathWorker()
_inprocess_lock = threading.Lock()


@atexit.register
def _close_worker() -> None:
    _WORKER.close()


def _reset_after_fork() -> None:
    # A forked child must not share the parent's helper (interleaved requests) or its locks.
    global _WORKER, _inprocess_lock
    _WORKER = _MathWorker()
    _inprocess_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


@lru_cache(maxsize=4096)
def _inprocess_parse(s: str) -> tuple:
    import math_verify

    try:
        return tuple(_mv_parse(math_verify, s, None))
    except Exception:  # noqa: BLE001
        return ()


def _inprocess_equal(a: str, b: str) -> bool:
    """Fallback when the helper is unavailable: the screens in _verifiable are the bound."""
    import logging

    import math_verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:
        with _inprocess_lock:  # sympy caches are not thread-safe
            return _mv_equal(math_verify, lambda s: list(_inprocess_parse(s)), a, b, None)
    except Exception:  # noqa: BLE001
        return False


def math_verify_equal(a: str, b: str) -> bool:
    """math-verify equivalence (both directions), bounded; False when screened out or timed out."""
    if not (_verifiable(a) and _verifiable(b)):
        return False
    r = _WORKER.equal(a, b, MATH_TIMEOUT_S)
    if r is None and _WORKER.disabled:
        return _inprocess_equal(a, b)
    return bool(r)
