"""Temporal self-consistency voting and Temporal Semantic Entropy over per-step answers.

Pure Python (no torch, and no dependency on :mod:`lm_eval_temporal.answers`): every function
takes the sequence of answers parsed at denoising steps ``s = 0..T-1`` (``None`` = nothing
parsed at that step) and an optional ``equivalent(a, b) -> bool``. ``equivalent=None`` clusters
by exact string equality, which is what the paper's official code does ("exact" mode); pass
``answers.equivalence(task)`` for semantic clusters.

Weights over the *global* step index ``s`` with ``T`` total steps (docs/algorithm.md, "Voting"):
``fixed`` w = 1, ``linear`` w = (s + 1) / T, ``exp`` w = exp(alpha * s / T).

Clustering is greedy in step order: each distinct answer string joins the first existing
cluster whose representative (its first-seen answer) it is equivalent to, else starts a new
cluster. Each distinct string is compared once per representative, so a 256-step trajectory
with a handful of distinct answers costs a few equivalence calls.

Tie-break (documented and deterministic): among clusters with the same total weight (equal up
to a relative 1e-12), the one whose latest supporting step is later wins. Since no two
clusters share a step, this always picks exactly one.

``tie="first"`` (on :func:`vote`, :func:`gated_vote` and :class:`RunningVote`) is the paper's
official vote instead: each cluster's weight is accumulated step by step in plain float
arithmetic, the largest total wins, and a tie (exact float equality) goes to the answer seen
first. With exact clustering and the official parsed
answers as keys this reproduces the official vote bit for bit (tests/test_paper_protocol.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields

from lm_eval_temporal.config import WEIGHTINGS

__all__ = [
    "WEIGHTINGS",
    "Cluster",
    "VoteResult",
    "step_weights",
    "cluster_answers",
    "vote",
    "GatedVoteResult",
    "gated_vote",
    "RunningVote",
    "temporal_semantic_entropy",
]

_TIE_REL = 1e-12
TIES = ("latest", "first")

Equivalence = Callable[[str, str], bool]


def step_weights(T: int, weighting: str = "exp", alpha: float = 5.0) -> list[float]:
    """Weights of steps 0..T-1: fixed 1, linear (s+1)/T, exp exp(alpha*s/T)."""
    if not isinstance(T, int) or T < 0:
        raise ValueError(f"T must be a non-negative int, got {T!r}")
    if weighting == "fixed":
        return [1.0] * T
    if weighting == "linear":
        return [(s + 1) / T for s in range(T)]
    if weighting == "exp":
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        return [math.exp(alpha * s / T) for s in range(T)]
    raise ValueError(f"unknown weighting {weighting!r}; expected one of {', '.join(WEIGHTINGS)}")


@dataclass
class Cluster:
    """Answers judged equivalent. ``answer`` is the representative (first seen)."""

    answer: str
    members: list[str]
    steps: list[int]
    weight: float = 0.0
    share: float = 0.0

    @property
    def last_step(self) -> int:
        return self.steps[-1]


def cluster_answers(
    answers: Sequence[str | None], equivalent: Equivalence | None = None
) -> tuple[list[Cluster], list[int | None]]:
    """Greedy clusters in step order and each step's cluster index (None for None answers)."""
    clusters: list[Cluster] = []
    of: dict[str, int] = {}  # distinct answer string -> cluster index
    labels: list[int | None] = []
    for s, a in enumerate(answers):
        if a is None:
            labels.append(None)
            continue
        k = of.get(a)
        if k is None:
            if equivalent is not None:
                k = next((i for i, c in enumerate(clusters) if equivalent(c.answer, a)), None)
            if k is None:
                clusters.append(Cluster(answer=a, members=[], steps=[]))
                k = len(clusters) - 1
            clusters[k].members.append(a)
            of[a] = k
        clusters[k].steps.append(s)
        labels.append(k)
    return clusters, labels


def _in_order(ws: Iterable[float]) -> float:
    """Left-to-right float sum (``sum`` compensates since Python 3.12; the official code does not)."""
    total = 0.0
    for w in ws:
        total += w
    return total


def _weigh(
    clusters: list[Cluster], weights: Sequence[float], steps: set[int] | None = None, add: Callable = math.fsum
) -> float:
    total = 0.0
    for c in clusters:
        c.weight = add(weights[s] for s in c.steps if steps is None or s in steps)
        total += c.weight
    for c in clusters:
        c.share = c.weight / total if total > 0 else 0.0
    return total


def _check_tie(tie: str) -> None:
    if tie not in TIES:
        raise ValueError(f"tie={tie!r}: expected one of {', '.join(TIES)}")


# How each tie rule sums a cluster's weights: exactly, or in step order as the official code does.
_ADD = {"latest": math.fsum, "first": _in_order}


def _beats(weight: float, last: int, best_weight: float, best_last: int, tie: str) -> bool:
    """Whether a cluster (total ``weight``, latest step ``last``) beats the current best, one
    seen before it. ``latest``: heavier, or as heavy (relative 1e-12) with a later latest step;
    ``first``: strictly heavier (an exact tie keeps the one seen first)."""
    if tie == "first":
        return weight > best_weight
    if math.isclose(weight, best_weight, rel_tol=_TIE_REL, abs_tol=0.0):
        return last > best_last
    return weight > best_weight


def _winner(clusters: list[Cluster], tie: str = "latest") -> Cluster | None:
    best = None
    for c in clusters:
        if best is None or _beats(c.weight, c.last_step, best.weight, best.last_step, tie):
            best = c
    return best


def _ordered(clusters: list[Cluster], best: Cluster, tie: str) -> list[Cluster]:
    """Every cluster, ``best`` first, then heaviest first, equals in the tie rule's order."""
    if tie == "first":
        return sorted(clusters, key=lambda c: (c is not best, -c.weight, c.steps[0]))
    return sorted(clusters, key=lambda c: (c is not best, -c.weight, -c.last_step))


@dataclass
class VoteResult:
    """Outcome of :func:`vote`.

    ``answer``: the answer at ``step`` (the latest step of the winning cluster), or the final
    answer (None) when no step parsed. ``step``: that step's index (T - 1 when nothing
    parsed; -1 for an empty trajectory) -- the backend returns that step's text.
    ``cluster_steps`` / ``cluster_weights``: the winning cluster's steps and their weights.
    ``weight_share``: its share of the total weight (0.0 when nothing parsed).
    ``clusters``: every cluster, heaviest first (ties in the vote order).
    """

    answer: str | None
    step: int
    cluster_steps: list[int] = field(default_factory=list)
    cluster_weights: list[float] = field(default_factory=list)
    weight_share: float = 0.0
    clusters: list[Cluster] = field(default_factory=list)


def vote(
    answers: Sequence[str | None],
    *,
    weighting: str = "exp",
    alpha: float = 5.0,
    equivalent: Equivalence | None = None,
    tie: str = "latest",
) -> VoteResult:
    """Temporal self-consistency vote: argmax over clusters of the summed step weights.

    Steps whose answer is None cast no vote; if none parses, the result falls back to the
    final step. ``tie="latest"`` (default): weights summed exactly (``math.fsum``), and ties
    (relative 1e-12) go to the cluster whose latest supporting step is later. ``tie="first"``:
    the official vote -- weights added step by step in float arithmetic, and an exact tie goes
    to the cluster seen first.
    """
    _check_tie(tie)
    T = len(answers)
    weights = step_weights(T, weighting, alpha)
    clusters, _ = cluster_answers(answers, equivalent)
    _weigh(clusters, weights, add=_ADD[tie])
    best = _winner(clusters, tie)
    if best is None:
        return VoteResult(answer=answers[-1] if T else None, step=T - 1)
    ordered = _ordered(clusters, best, tie)
    step = best.last_step
    return VoteResult(
        answer=answers[step],
        step=step,
        cluster_steps=list(best.steps),
        cluster_weights=[weights[s] for s in best.steps],
        weight_share=best.share,
        clusters=ordered,
    )


@dataclass
class GatedVoteResult(VoteResult):
    """Outcome of :func:`gated_vote`: a :class:`VoteResult` plus the gate's verdict.

    ``kept_final``: True when the final answer passed the gate (then ``answer``/``step`` are the
    final step's and ``weight_share`` is its cluster's share over the window), False when the
    result is the fallback vote. ``gate_share``: the final answer's cluster share of the
    window's weight (0.0 when the final step has no answer or nothing in the window parsed).
    """

    kept_final: bool = False
    gate_share: float = 0.0


def gated_vote(
    answers: Sequence[str | None],
    *,
    window: int = 8,
    share: float = 0.9,
    weighting: str = "exp",
    alpha: float = 5.0,
    equivalent: Equivalence | None = None,
    total_steps: int | None = None,
    tie: str = "latest",
) -> GatedVoteResult:
    """Keep the final answer when the model has settled on it, vote otherwise.

    The gate looks at the last ``window`` steps (all of them when ``window >= T``): if the final
    answer's cluster holds at least ``share`` of those steps' weight (``weighting``/``alpha``
    over the global step index, as in :func:`vote`; steps without an answer cast no weight),
    the final answer is kept. Otherwise -- including when the final step parsed nothing --
    the result is :func:`vote` with the same weighting. ``share <= 0`` always keeps the final
    answer when it parsed; ``share > 1`` always votes.

    When ``share`` times the window's part of the total weight exceeds 1/2 (exp weights:
    ``share * (1 - exp(-alpha*window/T)) / (1 - exp(-alpha)) > 1/2``), a final answer that
    passes the gate holds over half of all the weight, so the plain vote picks it as well and
    the gated vote equals :func:`vote`. The gate only changes results with a window short
    relative to ``T`` (e.g. T = 48, alpha 5: window 8 and share 0.9 is exactly the exp vote;
    T = 128: window 8 is not).

    ``total_steps``: the schedule's step count when ``answers`` covers only its first steps
    (a row stopped early); weights are then those of ``step_weights(total_steps)`` and the
    steps never run cast no vote. Default ``len(answers)``. ``tie``: the vote's tie rule (as in
    :func:`vote`; the gate's window weights are summed the same way).
    """
    _check_tie(tie)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    if not math.isfinite(share):
        raise ValueError(f"share must be finite, got {share!r}")
    T = len(answers)
    total = T if total_steps is None else total_steps
    if total < T:
        raise ValueError(f"total_steps={total_steps!r}: expected at least len(answers)={T}")
    weights = step_weights(total, weighting, alpha)
    clusters, labels = cluster_answers(answers, equivalent)
    gate = 0.0
    if T and labels[-1] is not None:
        _weigh(clusters, weights, steps=set(range(max(0, T - window), T)), add=_ADD[tie])
        final = clusters[labels[-1]]
        gate = final.share
        if gate >= share:
            return GatedVoteResult(
                answer=answers[-1],
                step=T - 1,
                cluster_steps=list(final.steps),
                cluster_weights=[weights[s] for s in final.steps],
                weight_share=gate,
                clusters=_ordered(clusters, final, tie),
                kept_final=True,
                gate_share=gate,
            )
    padded = list(answers) + [None] * (total - T)
    v = vote(padded, weighting=weighting, alpha=alpha, equivalent=equivalent, tie=tie)
    if v.answer is None and T:
        v.step = T - 1  # nothing parsed: the final step, as vote() does without padding
    return GatedVoteResult(**{f.name: getattr(v, f.name) for f in fields(VoteResult)}, kept_final=False, gate_share=gate)


class RunningVote:
    """The vote of :func:`vote` over a growing prefix of steps, updated one step at a time.

    ``RunningVote(T, weighting, alpha, equivalent)``; ``add(answer)`` appends the next step
    (global index = number of steps added so far, weighted over the full schedule of ``T``
    steps) and returns ``(winner, share)``: the representative answer of the current winning
    cluster (None while nothing parsed) and its share of the weight so far. ``streak`` counts
    the consecutive steps, ending with the latest, at which the same cluster was the winner
    (0 while nothing parsed). After ``add`` for steps ``0..s`` the winner is the cluster
    ``vote(answers[:s + 1])`` picks, weights ``step_weights(T)[:s + 1]``, same tie rule ``tie``.
    """

    def __init__(self, T: int, weighting: str = "exp", alpha: float = 5.0, equivalent: Equivalence | None = None,
                 tie: str = "latest"):
        _check_tie(tie)
        self.weights = step_weights(T, weighting, alpha)
        self.equivalent = equivalent
        self.tie = tie
        self.step = 0
        self.streak = 0
        self.winner: int | None = None
        self.share = 0.0
        self._reps: list[str] = []
        self._weight: list[float] = []
        self._last: list[int] = []
        self._of: dict[str, int] = {}
        self._total = 0.0

    def _cluster(self, a: str) -> int:
        k = self._of.get(a)
        if k is None:
            if self.equivalent is not None:
                k = next((i for i, r in enumerate(self._reps) if self.equivalent(r, a)), None)
            if k is None:
                self._reps.append(a)
                self._weight.append(0.0)
                self._last.append(-1)
                k = len(self._reps) - 1
            self._of[a] = k
        return k

    def add(self, answer: str | None) -> tuple[str | None, float]:
        s = self.step
        if s >= len(self.weights):
            raise ValueError(f"RunningVote: more than T={len(self.weights)} steps added")
        self.step += 1
        if answer is not None:
            k = self._cluster(answer)
            self._weight[k] += self.weights[s]
            self._last[k] = s
            self._total += self.weights[s]
            best = None
            for i, w in enumerate(self._weight):  # clusters in the order first seen
                if best is None or _beats(w, self._last[i], self._weight[best], self._last[best], self.tie):
                    best = i
            self.streak = self.streak + 1 if best == self.winner else 1
            self.winner = best
        elif self.winner is not None:
            self.streak += 1
        if self.winner is None:
            return None, 0.0
        self.share = self._weight[self.winner] / self._total if self._total > 0 else 0.0
        return self._reps[self.winner], self.share


def temporal_semantic_entropy(
    answers: Sequence[str | None],
    *,
    weighting: str = "exp",
    alpha: float = 12.8,
    skip_ratio: float = 0.5,
    include_none: bool = False,
    base: float = 2.0,
    equivalent: Equivalence | None = None,
) -> float:
    """TSE = -sum_k p_k log_base p_k over answer clusters of the kept steps.

    Kept steps: ``s >= int(skip_ratio * T)`` (official default: drop the first half), weighted
    as in :func:`step_weights` with the global index ``s`` and total ``T``. ``p_k`` is cluster
    k's share of the kept weight. Steps without an answer are dropped, unless
    ``include_none`` makes "no answer" a cluster of its own.

    Defined edge cases (the official code returns log2(batch size) when nothing parses; we do
    not): no kept step at all -> 0.0; kept steps but none with an answer -> the maximum
    entropy ``log_base(n_kept)``, as if every kept step had said something different.
    """
    if not 0.0 <= skip_ratio <= 1.0:
        raise ValueError(f"skip_ratio must be in [0, 1], got {skip_ratio!r}")
    if base <= 0 or base == 1 or not math.isfinite(base):
        raise ValueError(f"base must be positive and not 1, got {base!r}")
    T = len(answers)
    weights = step_weights(T, weighting, alpha)
    start = int(skip_ratio * T)
    window = range(start, T)
    if not window:
        return 0.0
    if include_none:
        # A sentinel no real answer can equal, clustered only with itself.
        none = object()
        kept = [none if answers[s] is None else answers[s] for s in window]
        eq = None if equivalent is None else (lambda a, b: a is not none and b is not none and equivalent(a, b))
        clusters, _ = cluster_answers(kept, eq)  # type: ignore[arg-type]
        for c in clusters:
            c.steps = [s + start for s in c.steps]
    else:
        kept_steps = [s for s in window if answers[s] is not None]
        if not kept_steps:
            return math.log(len(window)) / math.log(base) if len(window) > 1 else 0.0
        clusters, _ = cluster_answers([answers[s] for s in kept_steps], equivalent)
        for c in clusters:
            c.steps = [kept_steps[i] for i in c.steps]
    total = _weigh(clusters, weights)
    if total <= 0:
        return 0.0
    h = -math.fsum(c.share * math.log(c.share) for c in clusters if c.share > 0) / math.log(base)
    return max(0.0, h)  # no -0.0 or -1e-17 from rounding
