"""lm_eval_temporal.temporal: weights, vote, TSE and per-sample statistics, by hand."""

from __future__ import annotations

import math
import time
from functools import partial

import pytest

from lm_eval_temporal import answers, temporal
from lm_eval_temporal.temporal import step_weights, temporal_semantic_entropy, vote

E = math.e


def test_step_weights():
    assert step_weights(4, "fixed") == [1.0] * 4
    assert step_weights(4, "linear") == [0.25, 0.5, 0.75, 1.0]  # (s+1)/T
    assert step_weights(4, "exp", alpha=5.0) == pytest.approx([1, E**1.25, E**2.5, E**3.75])  # exp(5 s/T)
    assert step_weights(0, "exp") == []
    with pytest.raises(ValueError, match="fixed, linear, exp"):
        step_weights(4, "cosine")
    with pytest.raises(ValueError):
        step_weights(-1)


def test_tie_break_latest_step_wins_and_one_bit():
    # [1, 1, 2, 2], fixed weights: 2 vs 2 -> the cluster whose latest step is later ("2") wins.
    r = vote(["1", "1", "2", "2"], weighting="fixed")
    assert (r.answer, r.step, r.cluster_steps, r.weight_share) == ("2", 3, [2, 3], 0.5)
    assert [c.answer for c in r.clusters] == ["2", "1"]
    # The order of first appearance does not matter: the later cluster wins the tie.
    assert vote(["2", "1", "1", "2"], weighting="fixed").answer == "2"
    assert vote(["2", "2", "1", "1"], weighting="fixed").answer == "1"
    assert temporal_semantic_entropy(["1", "1", "2", "2"], weighting="fixed", skip_ratio=0) == pytest.approx(1.0)


def test_exp_weights_flip_the_winner():
    # T = 5: fixed A=3, B=2 -> A. exp(alpha=5): w_s = e^s, A = 1+e+e^2 = 11.107, B = e^3+e^4 = 74.684 -> B.
    seq = ["A", "A", "A", "B", "B"]
    assert vote(seq, weighting="fixed").answer == "A"
    r = vote(seq, weighting="exp", alpha=5.0)
    assert (r.answer, r.step, r.cluster_steps) == ("B", 4, [3, 4])
    assert r.cluster_weights == pytest.approx([E**3, E**4])
    assert r.weight_share == pytest.approx(74.6837 / (74.6837 + 11.1073), abs=1e-4)
    # linear: A = (1+2+3)/5 = 1.2, B = (4+5)/5 = 1.8 -> B
    assert vote(seq, weighting="linear").answer == "B"


def test_tse_skip_ratio_drops_first_half():
    seq = ["X", "X", "Y", "Z"]
    # skip 0.5 keeps steps 2, 3 -> Y, Z with equal (fixed) weight: 1 bit.
    assert temporal_semantic_entropy(seq, weighting="fixed", skip_ratio=0.5) == pytest.approx(1.0)
    # skip 0: p = (1/2, 1/4, 1/4) -> 1.5 bits; natural log base: 1.5 ln 2.
    assert temporal_semantic_entropy(seq, weighting="fixed", skip_ratio=0.0) == pytest.approx(1.5)
    assert temporal_semantic_entropy(seq, weighting="fixed", skip_ratio=0.0, base=E) == pytest.approx(1.5 * math.log(2))
    # Official defaults (exp 12.8, skip 0.5): kept steps 2, 3 with weights e^6.4, e^9.6:
    # p = 1/(1+e^3.2) = 0.039166 -> H = 0.23845 bits.
    assert temporal_semantic_entropy([None, "1", "2", "3"]) == pytest.approx(0.23845, abs=1e-5)
    assert temporal_semantic_entropy(["a", "b", "c", "c", "c", "c"]) == 0.0
    with pytest.raises(ValueError):
        temporal_semantic_entropy(seq, skip_ratio=1.5)
    with pytest.raises(ValueError):
        temporal_semantic_entropy(seq, base=1.0)


def test_nothing_parsed():
    r = vote([None, None, None, None])
    assert (r.answer, r.step, r.cluster_steps, r.weight_share, r.clusters) == (None, 3, [], 0.0, [])
    # Maximum entropy of the kept steps: log2(2) with the default skip, log2(4) without.
    assert temporal_semantic_entropy([None] * 4) == pytest.approx(1.0)
    assert temporal_semantic_entropy([None] * 4, skip_ratio=0) == pytest.approx(2.0)
    assert temporal_semantic_entropy([None] * 4, include_none=True) == 0.0  # one "no answer" cluster
    assert temporal_semantic_entropy([]) == 0.0
    assert temporal_semantic_entropy(["a"], skip_ratio=1.0) == 0.0
    empty = vote([])
    assert (empty.answer, empty.step) == (None, -1)
    # Unparsed steps cast no vote but count in include_none mode.
    assert vote([None, "7", None, None]).answer == "7"
    assert temporal_semantic_entropy([None, "a", None, "a"], weighting="fixed", skip_ratio=0) == 0.0
    assert temporal_semantic_entropy([None, "a", None, "a"], weighting="fixed", skip_ratio=0,
                                     include_none=True) == pytest.approx(1.0)


def test_semantic_clusters_per_task():
    gsm = partial(answers.equivalent, task="gsm8k")
    seq = ["18", "18.0", "$18", "18 dollars"]
    assert len(vote(seq, equivalent=gsm).clusters) == 1
    assert temporal_semantic_entropy(seq, skip_ratio=0, equivalent=gsm) == 0.0
    # Exact mode (the official code) splits them: 4 equal clusters = 2 bits.
    assert len(vote(seq).clusters) == 4
    assert temporal_semantic_entropy(seq, weighting="fixed", skip_ratio=0) == pytest.approx(2.0)

    math_eq = partial(answers.equivalent, task="math500")
    r = vote(["\\frac{1}{2}", "0.5", "1/2", "3"], weighting="fixed", equivalent=math_eq)
    assert (r.answer, r.step, r.cluster_steps) == ("1/2", 2, [0, 1, 2])
    assert r.clusters[0].members == ["\\frac{1}{2}", "0.5", "1/2"]

    cd = partial(answers.equivalent, task="countdown")
    r = vote(["(49+55)-53", "55-53+49", "49*55/53"], weighting="fixed", equivalent=cd)
    assert (r.answer, r.cluster_steps) == ("55-53+49", [0, 1])


def test_greedy_clusters_against_representatives():
    # A non-transitive "equivalence" (|a - b| <= 1): 2 joins 1's cluster; 3 is compared with the
    # representative 1 only, so it starts its own cluster.
    near = lambda a, b: abs(int(a) - int(b)) <= 1  # noqa: E731
    clusters, labels = temporal.cluster_answers(["1", "2", "3", None, "2"], near)
    assert [c.answer for c in clusters] == ["1", "3"]
    assert labels == [0, 0, 1, None, 0]


def test_equivalence_called_once_per_distinct_pair_and_fast():
    calls = []

    def eq(a, b):
        calls.append((a, b))
        return a.rstrip("0").rstrip(".") == b.rstrip("0").rstrip(".")

    seq = [None] * 40 + ["12"] * 100 + ["13"] * 50 + ["12.0"] * 66
    r = vote(seq, equivalent=eq)
    assert r.answer == "12.0" and r.step == 255
    assert calls == [("12", "13"), ("12", "12.0")]  # 13 vs rep 12; 12.0 joins 12 at once
    n = 200
    gsm = partial(answers.equivalent, task="gsm8k")
    t = time.perf_counter()
    for _ in range(n):
        vote(seq, equivalent=gsm)
        temporal_semantic_entropy(seq, equivalent=gsm)
    per_call = (time.perf_counter() - t) / n
    assert per_call < 1e-3, f"vote + TSE on 256 steps took {per_call * 1e6:.0f} us"


def test_vote_share_and_tse_by_hand():
    seq = [None, "5", "7", "7", "5", "5"]
    r = vote(seq, weighting="fixed")
    assert (r.answer, r.step, r.weight_share) == ("5", 5, pytest.approx(3 / 5))
    assert [c.answer for c in r.clusters] == ["5", "7"] and r.clusters[0].steps == [1, 4, 5]
    # kept steps 3, 4, 5 (skip half of 6): 7, 5, 5 with exp(12.8 s / 6) weights
    w = [math.exp(12.8 * k / 6) for k in (3, 4, 5)]
    p = w[0] / sum(w)
    assert temporal_semantic_entropy(seq) == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)))
    nothing = vote([None, None])
    assert (nothing.answer, nothing.step, nothing.weight_share, nothing.clusters) == (None, 1, 0.0, [])


# ---------------------------------------------------------------- gated vote, running vote
def test_gated_vote_keeps_a_settled_final_answer():
    # T = 5, exp alpha 5: w_s = e^s. Final "B" holds steps 3, 4.
    seq = ["A", "A", "A", "B", "B"]
    # Window 2 = steps 3, 4: B holds all of it -> kept.
    r = temporal.gated_vote(seq, window=2, share=0.9)
    assert (r.answer, r.step, r.kept_final, r.gate_share) == ("B", 4, True, 1.0)
    assert r.cluster_steps == [3, 4] and r.cluster_weights == pytest.approx([E**3, E**4])
    # Window 3 = steps 2, 3, 4: B = e^3 + e^4 = 74.68, A = e^2 = 7.39 -> share 0.90997.
    r = temporal.gated_vote(seq, window=3, share=0.9)
    assert r.kept_final and r.gate_share == pytest.approx((E**3 + E**4) / (E**2 + E**3 + E**4))
    # share 0.95 fails the gate -> the exp vote, which also picks B here.
    r = temporal.gated_vote(seq, window=3, share=0.95)
    assert not r.kept_final and r.answer == "B" and r.gate_share == pytest.approx(0.90997, abs=1e-5)


def test_gated_vote_falls_back_to_the_vote_when_unsettled():
    # Final "C" at step 4 only; window 3 = steps 2..4: A e^2, B e^3, C e^4 -> C share 0.665 < 0.9.
    seq = ["A", "B", "B", "B", "C"]
    r = temporal.gated_vote(seq, window=3, share=0.9, weighting="fixed")
    # fixed weights over the window: C = 1/3; fallback fixed vote: B (3 steps) wins.
    assert (r.kept_final, r.answer, r.step) == (False, "B", 3)
    assert r.gate_share == pytest.approx(1 / 3)
    assert r.answer == vote(seq, weighting="fixed").answer
    # Final step unparsed: never kept; the exp vote decides (A = 1, B = e + e^2 + e^3).
    r = temporal.gated_vote(["A", "B", "B", "B", None], window=2, share=0.5)
    assert (r.kept_final, r.answer, r.gate_share) == (False, "B", 0.0)
    # Equivalent answers share a cluster: "5" and "5.0" over the window.
    eq = partial(answers.equivalent, task="gsm8k")
    r = temporal.gated_vote(["7", "7", "7", "5", "5.0"], window=2, share=1.0, weighting="fixed", equivalent=eq)
    assert r.kept_final and r.answer == "5.0"
    assert temporal.gated_vote(["7", "7", "7", "5", "5.0"], window=2, share=1.0, weighting="fixed").answer == "7"


def test_gated_vote_edge_cases():
    assert temporal.gated_vote([], window=3).answer is None
    r = temporal.gated_vote([None, None], window=3)
    assert (r.answer, r.step, r.kept_final) == (None, 1, False)
    # A window longer than the trajectory covers all of it.
    assert temporal.gated_vote(["A", "B"], window=10, share=0.5, weighting="fixed").kept_final
    # total_steps: steps never run cast no vote but set the weights (T = 10, alpha 5: w = e^(s/2)).
    r = temporal.gated_vote(["A", "B", "B", "A"], window=2, share=0.9, total_steps=10)
    assert not r.kept_final and r.gate_share == pytest.approx(E**1.5 / (E**1 + E**1.5))
    assert r.answer == vote(["A", "B", "B", "A"] + [None] * 6).answer
    with pytest.raises(ValueError):
        temporal.gated_vote(["A"], window=0)
    with pytest.raises(ValueError):
        temporal.gated_vote(["A", "B"], total_steps=1)


def test_running_vote_matches_the_vote_on_every_prefix():
    import random

    rng = random.Random(0)
    eq = partial(answers.equivalent, task="gsm8k")
    for trial in range(60):
        T = rng.randint(1, 30)
        seq = [rng.choice([None, "1", "2", "2.0", "3"]) for _ in range(T)]
        weighting = rng.choice(["fixed", "linear", "exp"])
        tie = rng.choice(["latest", "first"])
        run = temporal.RunningVote(T, weighting, 5.0, eq, tie)
        streak, prev = 0, None
        for s in range(T):
            winner, share = run.add(seq[s])
            padded = seq[: s + 1] + [None] * (T - s - 1)
            ref = vote(padded, weighting=weighting, equivalent=eq, tie=tie)
            if ref.clusters:
                assert eq(winner, ref.answer) and share == pytest.approx(ref.weight_share)
                streak = streak + 1 if prev is not None and eq(prev, ref.answer) else 1
                prev = ref.answer
            else:
                assert (winner, share) == (None, 0.0)
            assert run.streak == streak
    with pytest.raises(ValueError):
        run.add("1")  # past T


def test_gated_vote_and_running_vote_take_the_tie_rule():
    seq = ["A", "B"]  # fixed weights: an exact tie
    for tie, want in (("latest", "B"), ("first", "A")):
        assert vote(seq, weighting="fixed", tie=tie).answer == want
        g = temporal.gated_vote(seq + [None], window=1, weighting="fixed", tie=tie)  # final parsed nothing: votes
        assert (g.kept_final, g.answer, g.step) == (False, want, seq.index(want))
        kept = temporal.gated_vote(seq, window=2, share=0.5, weighting="fixed", tie=tie)  # the gate keeps "B"
        assert kept.kept_final and [c.answer for c in kept.clusters] == ["B", "A"]
        run = temporal.RunningVote(2, "fixed", tie=tie)
        run.add("A")
        assert run.add("B") == (want, 0.5) and run.streak == (1 if want == "B" else 2)
    with pytest.raises(ValueError, match="tie='last': expected one of latest, first"):
        temporal.gated_vote(seq, tie="last")
    with pytest.raises(ValueError, match="tie='last': expected one of latest, first"):
        temporal.RunningVote(2, tie="last")


def test_running_vote_streak_by_hand():
    run = temporal.RunningVote(6, "fixed")
    assert run.add(None) == (None, 0.0) and run.streak == 0
    assert run.add("A") == ("A", 1.0) and run.streak == 1
    assert run.add(None) == ("A", 1.0) and run.streak == 2  # the winner held through the gap
    assert run.add("B") == ("B", 0.5) and run.streak == 1  # tie: the later cluster wins
    assert run.add("A") == ("A", 2 / 3) and run.streak == 1
    assert run.add("A") == ("A", 0.75) and run.streak == 2


def test_gated_vote_equals_the_exp_vote_when_the_window_holds_most_of_the_weight():
    """If q * (window's share of the total exp weight) > 1/2, a final answer that passes the gate
    holds over half of all the weight, so the exp vote picks it too: gated == exp. With T = 48
    and alpha 5 that holds for k = 8, q = 0.9 (0.9 * 0.5685 = 0.51)."""
    import random

    rng = random.Random(1)
    T, alpha, k, q = 48, 5.0, 8, 0.9
    w = step_weights(T, "exp", alpha)
    assert q * sum(w[-k:]) / sum(w) > 0.5
    for _ in range(200):
        p = rng.random()
        seq = [rng.choice(["1", "2", "3", None]) if rng.random() < p else "9" for _ in range(T)]
        g = temporal.gated_vote(seq, window=k, share=q, alpha=alpha)
        v = vote(seq, weighting="exp", alpha=alpha)
        assert g.answer == v.answer
