"""math-verify, the one unbounded step of answer checking, behind hard time bounds.

math-verify (sympy) can run for minutes or forever on some inputs, and its own timeout uses
SIGALRM, which only works on a main thread, while the backend and TCR call it from threads and
(daemonic) subprocesses. So the bound is built here, in three layers:

1. A screen (:mod:`.screen`, applied by the caller before :func:`math_verify_equal`): inputs
   whose evaluation explodes (see there) never reach sympy and count as "not equivalent".
2. A small pool of long-lived helper processes per Python process (:class:`_MathPool`, at most
   :data:`MATH_WORKERS` = ``LM_EVAL_TEMPORAL_MATH_WORKERS``, default 3). Helpers start in the
   background when all running ones are busy (never per call) and one spare is kept warm, so
   concurrent callers do not queue behind one slow comparison.
3. A per-call deadline of :data:`MATH_TIMEOUT_S` (``LM_EVAL_TEMPORAL_MATH_TIMEOUT``, seconds,
   default 1.25) that covers both the wait for a free helper and the comparison. The helper
   interrupts itself when the budget is spent (an interval timer on its own main thread); work
   it cannot interrupt (C-level big-integer arithmetic) is cut off :data:`_KILL_GRACE_S` later
   (killed, reaped and replaced in the background). A call returns within ``MATH_TIMEOUT_S +
   _KILL_GRACE_S`` (1.75 s by default) once a helper runs; the first call also waits for one to
   start (about a second).

A comparison that timed out, or found no free helper in time, has no verdict (None): callers
must neither cache it nor read it as one (it depends on the machine's load); each is counted
(:func:`stats`). Without helpers (none starts, or ``LM_EVAL_TEMPORAL_MATH_WORKER=0``)
math-verify runs in-process, one call at a time, behind the screen alone.

Helpers run this very file, loaded by path: it must import only the standard library.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from functools import lru_cache
from typing import Any


def _env_number(name: str, default: float, cast: Any = float) -> Any:
    try:
        return cast(os.environ.get(name, "") or default)
    except ValueError:
        return cast(default)


# Per-call bound (seconds): the wait for a free helper plus the comparison itself.
MATH_TIMEOUT_S = float(_env_number("LM_EVAL_TEMPORAL_MATH_TIMEOUT", 1.25))
# Most helper processes one Python process runs at once.
MATH_WORKERS = max(1, _env_number("LM_EVAL_TEMPORAL_MATH_WORKERS", 3, int))
_WORKER_ENV = "LM_EVAL_TEMPORAL_MATH_WORKER"
_STARTUP_TIMEOUT_S = 120.0
# Extra wait past the helper's own (interval-timer) deadline before it is killed and replaced.
_KILL_GRACE_S = 0.5
# How often the helper's timer fires again after the deadline, should something swallow it.
_REARM_S = 0.05

# ----------------------------------------------------------------------------- counts

# Per process, since the process started: see :func:`stats`.
_COUNTS: Counter = Counter()
_counts_lock = threading.Lock()
# Calls left without a verdict for want of time, by where the time ran out.
TIMEOUT_KINDS = ("wait_timeouts", "helper_timeouts", "kills")


def _count(key: str) -> None:
    with _counts_lock:
        _COUNTS[key] += 1


def stats() -> dict[str, int]:
    """math-verify calls of this process so far: ``calls``; ``unknown``, those left without a
    verdict; ``timeouts``, those of them that ran out of time, split into ``wait_timeouts`` (no
    helper was free before the deadline), ``helper_timeouts`` (the helper stopped itself at the
    deadline) and ``kills`` (it did not, and was killed after the grace). The other unknown calls
    lost their helper (it died, or none could start)."""
    with _counts_lock:
        got = {key: _COUNTS[key] for key in ("calls", "unknown", *TIMEOUT_KINDS)}
    return {**got, "timeouts": sum(got[k] for k in TIMEOUT_KINDS)}


# ----------------------------------------------------------------------------- math-verify


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


# Answer shapes whose first comparison in a fresh helper is slow (lazy imports): done at start-up.
_WARM_UP = (("1", "1"), ("x^2-1", "(x-1)(x+1)"), ("(-\\infty, 3]", "[0, 1)"), ("\\{1,2\\}", "\\{2, 1\\}"),
            ("\\text{(C)}", "C"), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"), ("\\sec x", "\\cot x"),
            ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"))


class _Deadline(BaseException):
    """Raised in the helper by its interval timer when a request's budget is spent."""


def _worker_main() -> None:  # pragma: no cover - runs in the helper process
    """Serve ``[id, a, b, budget_s]`` JSON lines on stdin with ``[id, bool | None]`` on stdout
    (None: the budget ran out)."""
    import logging
    import signal

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

    armed = [False]

    def on_timer(signum: int, frame: Any) -> None:
        if armed[0]:
            raise _Deadline

    signal.signal(signal.SIGALRM, on_timer)
    cache: dict[str, list] = {}

    def parse(s: str) -> list:
        # Parses cut short by the deadline raise through here and are never cached.
        if s not in cache:
            if len(cache) > 8192:
                cache.clear()
            try:
                got = _mv_parse(math_verify, s, None)
            except Exception:  # noqa: BLE001 - any failure is "unparsable"
                got = []
            cache[s] = got
        return cache[s]

    def equal(a: str, b: str, budget: float) -> bool | None:
        try:
            armed[0] = True
            signal.setitimer(signal.ITIMER_REAL, max(budget, 0.01), _REARM_S)
            try:
                return _mv_equal(math_verify, parse, a, b, None)
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Deadline:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            return None
        except Exception:  # noqa: BLE001
            return False

    for a, b in _WARM_UP:  # load the grammar and sympy's lazy parts before the first real budget
        equal(a, b, _STARTUP_TIMEOUT_S)
    out.write(b'["ready"]\n')
    for line in sys.stdin.buffer:
        try:
            rid, a, b, budget = json.loads(line)
            r = equal(a, b, float(budget))
        except BaseException:  # noqa: BLE001 - a stray deadline or a bad line
            armed[0] = False
            continue
        out.write(json.dumps([rid, r]).encode() + b"\n")


class _MathWorker:
    """One long-lived math-verify helper process, serving one call at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue | None = None
        self._next = 0
        self._start_failures = 0
        self._owner = os.getpid()
        self.disabled = os.environ.get(_WORKER_ENV, "1").strip().lower() in ("0", "false", "no", "off")

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

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
            try:
                for raw in stream:
                    lines.put(raw)
            except (OSError, ValueError):
                pass
            lines.put(None)

        threading.Thread(target=pump, daemon=True, name="lm_eval_temporal-math-reader").start()
        try:
            ready = lines.get(timeout=_STARTUP_TIMEOUT_S)
        except queue.Empty:
            ready = None
        try:
            ok = bool(ready) and json.loads(ready) == ["ready"]
        except ValueError:
            ok = False
        if not ok:
            _kill(proc)
            self._failed_start()
            return False
        self._start_failures = 0
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

    def ensure_started(self) -> bool:
        """Start the helper unless it runs (blocks up to the start-up timeout); False if it cannot."""
        with self._lock:
            if self.disabled:
                return False
            if self.running:
                return True
            self._stop()
            if self._start() and self.disabled:  # closed while it started
                self._stop()
            return self.running

    def equal(self, a: str, b: str, timeout: float, *, start: bool = True) -> bool | None:
        """math-verify equivalence in the helper within ``timeout`` seconds (plus the kill grace
        when the helper does not stop itself); None when it timed out or is unavailable.
        With ``start=False`` a helper that is not running is not started (None)."""
        with self._lock:
            if self.disabled:
                return None
            if not self.running:
                self._stop()
                if not start or not self._start():
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
            # The helper's own timer usually answers first; this is the hard bound for work it
            # cannot interrupt. The kill does not wait for the helper to exit.
            deadline = time.monotonic() + timeout + _KILL_GRACE_S
            while True:
                try:
                    raw = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    _count("kills")
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
                    if result is None:
                        _count("helper_timeouts")
                        return None
                    return bool(result)

    def close(self) -> None:
        if self._owner != os.getpid():  # a forked child must not kill its parent's helper
            return
        got = self._lock.acquire(timeout=_KILL_GRACE_S + 1)  # a call in flight at exit is cut off
        try:
            self._stop()
        finally:
            if got:
                self._lock.release()


def _reap(proc: subprocess.Popen) -> None:
    try:
        proc.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def _kill(proc: subprocess.Popen) -> None:
    """Kill a helper now; wait for it and close its pipes in the background."""
    try:
        proc.kill()
    except OSError:
        pass
    threading.Thread(target=_reap, args=(proc,), daemon=True, name="lm_eval_temporal-math-reaper").start()


class _MathPool:
    """Up to ``size`` helpers shared by the threads of one process (see the module docstring).

    A call takes a running idle helper; if there is none it has one started in the background
    (while fewer than ``size`` exist) and waits for whichever helper frees up first, until its
    own deadline. Once the pool is used, two helpers (one, if ``size`` is 1) are kept running,
    so that a helper killed for a timeout is replaced while the other serves. Same interface as
    :class:`_MathWorker`: ``equal``, ``disabled``, ``close``.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = MATH_WORKERS if size is None else max(1, size)
        self._workers = [_MathWorker() for _ in range(self.size)]
        self._busy: set[int] = set()  # serving a call or starting
        self._cond = threading.Condition()
        self._owner = os.getpid()

    @property
    def disabled(self) -> bool:
        return any(w.disabled for w in self._workers)

    def _warm(self, k: int) -> None:  # runs in a background thread; slot k is marked busy
        try:
            self._workers[k].ensure_started()
        finally:
            with self._cond:
                self._busy.discard(k)
                self._cond.notify_all()

    def _start_in_background(self, k: int) -> None:
        self._busy.add(k)
        threading.Thread(target=self._warm, args=(k,), daemon=True, name="lm_eval_temporal-math-start").start()

    def _acquire(self, timeout: float) -> tuple[int, float] | None:
        """A running helper's slot and the budget left, or None at the deadline / if disabled."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.disabled:
                idle = [k for k in range(self.size) if k not in self._busy]
                ready = [k for k in idle if self._workers[k].running]
                live = sum(1 for w in self._workers if w.running)
                stopped = [k for k in idle if not self._workers[k].running]
                if ready:
                    k = ready[0]
                    self._busy.add(k)
                    starting = sum(1 for j in self._busy if not self._workers[j].running)
                    if stopped and live + starting < min(2, self.size):
                        self._start_in_background(stopped[0])  # the spare
                    return k, deadline - time.monotonic()
                if stopped:
                    self._start_in_background(stopped[0])
                now = time.monotonic()
                if live == 0:
                    # Nothing runs yet (first use, or every helper was just replaced): the wait is
                    # start-up, not contention, so the budget starts when a helper is up.
                    self._cond.wait(_STARTUP_TIMEOUT_S)
                    deadline = time.monotonic() + timeout
                elif now >= deadline:
                    _count("wait_timeouts")
                    return None
                else:
                    self._cond.wait(deadline - now)
        return None

    def _release(self, k: int) -> None:
        with self._cond:
            self._busy.discard(k)
            if not self._workers[k].running and not self._workers[k].disabled:
                self._start_in_background(k)  # replace a helper killed for a timeout at once
            self._cond.notify_all()

    def equal(self, a: str, b: str, timeout: float) -> bool | None:
        """math-verify equivalence within ``timeout`` seconds, waiting included (plus the kill
        grace at worst); None when it timed out, no helper was free, or none can start."""
        got = self._acquire(timeout)
        if got is None:
            return None
        k, budget = got
        try:
            if budget <= 0:
                _count("wait_timeouts")
                return None
            return self._workers[k].equal(a, b, budget, start=False)
        finally:
            self._release(k)

    def close(self) -> None:
        if self._owner != os.getpid():  # a forked child must not kill its parent's helpers
            return
        for w in self._workers:
            w.disabled = True  # no restarts while shutting down
            w.close()


_WORKER: Any = _MathPool()
_inprocess_lock = threading.Lock()


@atexit.register
def _close_worker() -> None:
    _WORKER.close()


def _reset_after_fork() -> None:
    # A forked child must not share the parent's helpers (interleaved requests) or its locks,
    # and counts only its own calls.
    global _WORKER, _inprocess_lock, _counts_lock
    _WORKER = _MathPool()
    _inprocess_lock = threading.Lock()
    _counts_lock = threading.Lock()
    _COUNTS.clear()


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
    """Fallback when no helper is available: the caller's screen (:mod:`.screen`) is the bound."""
    import logging

    import math_verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:
        with _inprocess_lock:  # sympy caches are not thread-safe
            return _mv_equal(math_verify, lambda s: list(_inprocess_parse(s)), a, b, None)
    except Exception:  # noqa: BLE001
        return False


def math_verify_equal(a: str, b: str) -> bool | None:
    """math-verify equivalence (both directions) of two screened strings (:func:`.screen.verifiable`),
    bounded in time; None (no verdict, counted in :func:`stats`) when time ran out or the helper
    was lost."""
    r = _WORKER.equal(a, b, MATH_TIMEOUT_S)
    if r is None and _WORKER.disabled:
        r = _inprocess_equal(a, b)
    _count("calls")
    if r is None:
        _count("unknown")
    return r
