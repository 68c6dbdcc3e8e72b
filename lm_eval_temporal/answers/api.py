"""The entry points every caller uses, and the policies that hold for every task.

Answer checking runs inside evaluations and training loops that must not die on a bad
generation, so these functions never raise for any text (only for an unknown task name), cap
what they read, and cache results: the same step answers and pairs recur across hundreds of
denoising steps, and math equivalence can cost a math-verify call. Per-task rules come from
:mod:`.registry`.

``protocol="paper"`` swaps the rules for the paper's official ones (:mod:`.paper`), for
comparisons with its published numbers; ``"default"`` is this package's own rules.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, Callable

from lm_eval_temporal.answers import paper, verify
from lm_eval_temporal.answers.latex import clean_math
from lm_eval_temporal.answers.registry import REGISTRY, answer_task, canonical_task
from lm_eval_temporal.answers.text import MAX_ANSWER_CHARS, MAX_TEXT_CHARS, clean, coerce_text
from lm_eval_temporal.config import PROTOCOLS

# Cache only texts up to this size: bigger ones are rare and would pin memory.
_CACHE_TEXT_CHARS = 16_384
_CLUSTERS = ("equivalence", "exact")


def _protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return protocol


@lru_cache(maxsize=32_768)
def _extract_cached(text: str, task: str) -> str | None:
    return REGISTRY[task].extract(clean(text))


@lru_cache(maxsize=32_768)
def _extract_paper_cached(text: str, task: str) -> str | None:
    return paper.extract(text, task)


def extract_answer(text: str | None, task: str, protocol: str = "default") -> str | None:
    """The canonical answer stated in ``text`` for ``task``, or None if nothing parses.

    ``protocol="paper"``: the paper's official parse (:mod:`.paper`; gsm8k, svamp, math500 and
    countdown), on the text exactly as given: a float answer as ``repr(float)`` (``"18.0"``),
    for math500 the whole text when it has no box.

    Never raises for any ``text`` (None, bytes, numbers and arbitrary strings are accepted);
    raises ValueError only for an unknown ``task`` or ``protocol``. Results are cached per
    (text, task).
    """
    task = canonical_task(task)
    if _protocol(protocol) == "paper":
        return _extract_paper(coerce_text(text), paper.paper_task(task))
    s = coerce_text(text)
    if not s:
        return None
    try:
        if len(s) > _CACHE_TEXT_CHARS:
            return _extract_cached.__wrapped__(s[-MAX_TEXT_CHARS:], task)
        return _extract_cached(s, task)
    except Exception:  # noqa: BLE001 - a parser bug must not take an evaluation down
        return None


def _extract_paper(s: str | None, task: str) -> str | None:
    if not s:
        return None
    try:
        if len(s) > _CACHE_TEXT_CHARS:
            return paper.extract(s, task)
        return _extract_paper_cached(s, task)
    except Exception:  # noqa: BLE001
        return None


class _NoVerdict(Exception):
    """A check that gave no verdict in time, raised through the cache, which keeps no entry for
    a call that raises: the pair is checked again next time instead of staying wrong."""


@lru_cache(maxsize=65_536)
def _verdict_cached(a: str, b: str, task: str) -> bool:
    got = REGISTRY[task].equivalent(a, b)
    if got is None:
        raise _NoVerdict
    return got


def _verdict(a: str | None, b: str | None, task: str) -> bool | None:
    """Whether two extracted answers are the same answer: True, False, or None (unknown: a
    time-bounded check ran out of time; counted in :func:`scorer_stats`, never cached)."""
    task = canonical_task(task)
    a, b = coerce_text(a), coerce_text(b)
    if a is None or b is None:
        return False
    if a == b:
        return True
    if len(a) > MAX_TEXT_CHARS or len(b) > MAX_TEXT_CHARS:
        return False
    if b < a:  # one cache entry per unordered pair
        a, b = b, a
    try:
        return _verdict_cached(a, b, task)
    except _NoVerdict:
        return None
    except Exception:  # noqa: BLE001
        return False


def equivalent(a: str | None, b: str | None, task: str) -> bool:
    """Whether two extracted answers are the same answer for ``task`` (symmetric, cached).

    None is never equivalent to anything (a step without an answer casts no vote). A pair whose
    check ran out of time (math-verify, MATH500) is not equivalent for this call: a vote does
    not merge the two answers and a score counts the answer wrong. It is counted
    (:func:`scorer_stats`) and not cached, so a later call checks it again.
    """
    return _verdict(a, b, task) is True


def scorer_stats(since: dict[str, int] | None = None) -> dict[str, int]:
    """Counts of this process's math-verify calls (:func:`.verify.stats`): ``calls``;
    ``unknown``, those without a verdict (each scored as not equivalent); ``timeouts``, those of
    them that ran out of time, as ``wait_timeouts`` (no free helper), ``helper_timeouts`` and
    ``kills``. ``since``: an earlier result, for the calls made after it."""
    now = verify.stats()
    return {k: n - (since or {}).get(k, 0) for k, n in now.items()}


def clear_caches() -> None:
    """Forget every cached extraction and verdict (e.g. before timing or counting calls)."""
    _extract_cached.cache_clear()
    _extract_paper_cached.cache_clear()
    _verdict_cached.cache_clear()


def cache_info() -> dict[str, Any]:
    """``functools`` cache statistics of the ``extract`` and ``equivalent`` caches."""
    return {"extract": _extract_cached.cache_info(), "equivalent": _verdict_cached.cache_info()}


def equivalence(task: str, cluster: str = "equivalence") -> Callable[[str, str], bool] | None:
    """The answer-equivalence callable clustering uses for ``task``: None for ``cluster="exact"``
    (answers group by string), else :func:`equivalent` bound to ``task``."""
    if cluster == "exact":
        return None
    if cluster == "equivalence":
        return partial(equivalent, task=task)
    raise ValueError(f"cluster={cluster!r}: expected one of {', '.join(_CLUSTERS)}")


def normalize_gold(gold: Any, task: str) -> Any:
    """The gold answer in canonical, JSON-serialisable form; ValueError if it is malformed.

    - gsm8k / svamp: a number string (``"18"``, ``"0.5"``) from ``"...#### 18"`` text, a
      number string such as ``"1,000"`` or ``"18.0"``, or an int/float.
    - math500: the LaTeX answer string (a surrounding ``\\boxed{}`` or ``$...$`` removed).
    - countdown: ``[[a, b, c], target]`` from that list/tuple, from ``("a,b,c", "t")`` or from a
      ``{"input": "a,b,c", "output": "t"}`` row (ints where the values are whole).
    - generic: the stripped string (numbers normalised).
    Already-normalised golds come back unchanged.
    """
    return answer_task(task).normalize_gold(gold)


def is_correct(text: str | None, gold: Any, task: str, protocol: str = "default") -> bool:
    """Whether the answer in ``text`` matches ``gold`` (any format :func:`normalize_gold` takes).

    ``text`` may be a whole generation or an already extracted answer. Malformed golds and
    unparsable texts give False; raises ValueError only for an unknown ``task`` or ``protocol``.

    ``protocol="paper"``: the paper's official verdict on the generation ``text`` (parsed as
    :func:`extract_answer` does with that protocol; a bare answer is not recognised as one, as
    officially); :func:`.paper.check_answer` scores an answer that is already parsed.
    """
    t = answer_task(task)
    if _protocol(protocol) == "paper":
        return paper.check_answer(extract_answer(text, t.name, protocol="paper"), gold, t.name)
    try:
        g = t.normalize_gold(gold)
    except ValueError:
        return False
    s = coerce_text(text)
    if not s:
        return False
    try:
        answer = extract_answer(s, t.name)
        if answer is None and t.bare_answers and len(s) <= MAX_ANSWER_CHARS and "\n" not in s.strip():
            answer = clean_math(clean(s))  # a bare, already extracted answer such as "\frac{1}{2}"
        if answer is None:
            return False
        if t.check is not None:
            return t.check(answer, g)
        return equivalent(answer, g, t.name)
    except Exception:  # noqa: BLE001
        return False


def answer_correct(answer: str | None, gold: Any, task: str, protocol: str = "default") -> bool:
    """Whether an answer :func:`extract_answer` returned with ``protocol`` (a step's answer, a
    vote's winner) matches ``gold``: the one verdict on parsed answers that final-pass,
    ever-pass and vote-pass use."""
    if _protocol(protocol) == "paper":
        return paper.check_answer(answer, gold, answer_task(task).name)
    return answer is not None and is_correct(answer, gold, task)
