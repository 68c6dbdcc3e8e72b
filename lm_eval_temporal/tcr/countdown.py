"""Countdown training problems (three numbers), generated offline and never from the test set.

A problem is three numbers in 1..100 and a target in 1..100 reachable by an expression that
uses each number exactly once with + - * / and parentheses (d1's ``cd3`` test file has the
same shape). :func:`make_problem` builds a random expression and evaluates it with the
package's safe parser (:func:`lm_eval_temporal.answers.arith.parse_arith`, never ``eval``);
whole values in range become the target, so every target is reachable by construction and
the expression is kept as a witness.

Split, by the problem's key (sorted numbers and target, so a reordering is the same problem):

- a hash split: the key's salted SHA-256 modulo :data:`HELD_OUT_BUCKETS`; bucket 0 is reserved
  for evaluation, so a generated countdown evaluation set can be made disjoint by construction;
- d1's test file (``countdown/cd3_test.jsonl``, 256 problems, the ``countdown`` task) is not a
  hash bucket, so its keys' fingerprints (the first 40 bits of the same hash) are listed
  below and held out too. No seed of :func:`training_stream` yields one of them.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

__all__ = ["HELD_OUT_BUCKETS", "question_text", "problem_key", "is_held_out", "make_problem", "training_stream"]

NUMBERS = (1, 100)
TARGETS = (1, 100)
HELD_OUT_BUCKETS = 8
_SALT = "lm_eval_temporal.countdown.v1:"
_OPS = "+-*/"
# Fingerprints of the problems of d1's cd3 test file (tests/test_tcr.py checks them against
# the file when $LM_EVAL_TEMPORAL_DATA has it).
_TEST_FINGERPRINTS = frozenset((
    "0090d19707 00f3f1805e 0115b396d1 02591b194a 03aa00684d 045aa67d3c 04f8abb897 064bed7708 "
    "08cb279e23 08d93024fd 097ce6ece2 0b01d44035 0c283742ad 0c42e6f62d 0c4c253375 0c924aff77 "
    "0cf5fcef21 0de1837a16 0fa40ab0fa 0fd5833604 10647034c8 108b8a3a32 10d4d2c1e3 10f832923f "
    "123df7bbb0 14aecd90aa 1554d5e20e 1684086ba6 179f4f308a 184a85b1e5 18b879f6d3 19076e950f "
    "194346e3fc 19d80b0639 1a72d1d371 1b3394b81d 1c285cc753 1c3234992c 1c44363616 1cae035728 "
    "1d3d108559 1f3945f8d9 20cd9be24a 20eab461a8 21717ecbaf 25eb33b514 2625c0aadd 27bce48f46 "
    "2832ccd558 29d8c7b541 29d965d728 29f3571c5c 2a2f014136 2a7a3495c2 2cab4d3fca 2db2d042dd "
    "2e94ff2d7a 2ea7468975 30e57f60eb 31fbca9c1e 3420a14fcf 347793eecb 3499892066 3526c0e2ce "
    "366f30cb45 384250fb8a 39b4818555 39f8478003 3a4dc96133 3ad575b898 3aefe46a20 3ca53678ab "
    "3d3ee14f51 3dfd8395d7 3dfda3b1c4 3e287f16c1 3e424645c7 41088fd26e 417457bdbd 418dcaae2a "
    "43618d5bb3 43a369faf1 455da2122f 47a837efa0 484ed51f87 4892bb00ad 4c0aa5a2c1 4c48145574 "
    "4e18f58f22 50fa04fe3c 5103450662 51747f3dd0 51f82c6318 5275cdeaf9 532a4c1a58 56faa956b9 "
    "571e305f80 58694daea8 5b2925f563 5bb3f82870 5d033580c9 5f71a1e2b5 5f83c1a230 60b9f1e720 "
    "622d3e348c 62ae25a47d 64e762de75 65f9fa7300 6797e7bfbc 682b00c2ca 6905a262b5 6bfa32e49d "
    "6dc501f07a 6ed5679e4a 6f810366ad 709821ba82 716323a298 716b59aa7e 71ffacc7d5 7332398730 "
    "7365832a9d 740743de13 751188907e 76968bf03b 7780cb0995 79f1e7b1b7 7c1f21ae3b 7c90491cbb "
    "7cf994a024 80eb681473 82c39c9faa 84f9b034f6 865361fbef 87cc3d4def 882769a4ec 88d66b226a "
    "8968d78bea 8992000085 8a4c7b0a10 8a871872b2 8b4aa8ed2f 8b50bc3436 8c4abbcebb 8c8d5f3fe5 "
    "8e75ee3c05 8f0c10cccf 8f6904d438 8fe3b8ba4d 9300d0108a 932b287018 93dce01abc 94290ef8ba "
    "94da1f95be 9717d3f617 99cdeae62e 9a53af8aa2 9b31e2d32c 9bb28eb4e0 9ca8763f47 9e5f7544bd "
    "a1b58a67d8 a1d542e45a a388de9b2e a5ae26172b a5c89cc592 a5ecf3fcad a648490c91 a69b869ed6 "
    "a7321cbeda a8a9268054 a93de09c94 aaf0533de6 ab45435a61 ac328fb4fe acbd7c1891 adcfc24ecf "
    "addc3d7f81 b0be6560f1 b1a5f96e72 b1abc29555 b3a696227f b4e0768aa8 b5e21619c5 b9caa2e759 "
    "bb92783372 bc86c6d065 be99e95dd4 bf7cf87c06 bf8a3666ca bfe838a19f c226764d8d c254f435bd "
    "c2aa36d0be c39432bd5f c3b7bef406 c496e81df6 c4deec2774 c61cc9b219 c7e72ce696 c8076f29d8 "
    "c97f120b8f c9f06486a8 ca3a57f128 caba3a3a2c cb0b30903b ccb91417e9 cd197537c2 cd84ecff04 "
    "ce06d2865c cf94c18318 cf9743311d d0f353a91a d204ec6425 d21e4517c3 d289e9e628 d2e4d76de6 "
    "d49fd330b5 d58a614417 d5fdb54e11 d609e17d84 d8649c0900 d88cb33c09 d928c59818 d99f94b937 "
    "da773a55a3 dad61c1295 dd5564108f dd5ec52797 dec5748dfa dfbf86eb0a e035209548 e120c3585f "
    "e1da8374fd e4c19d1e00 e5349add1c e7c98c891b e7e8c5f43d e9f15aff7c e9f5a8f774 eb445601dd "
    "ed0da30cc3 f08d8fe21c f15f00398a f3d2ccb1ae f42fbc68e2 f51cefe6eb f57758c998 f5d32ff489 "
    "f64972904c f6e0ab1854 f77df2593f f90481ec38 f90b492e05 f99255fcef fa687362a0 fa7a32ec0c "
).split())


def question_text(numbers: Sequence[int], target: int) -> str:
    """The question as the ``countdown`` evaluation task words it."""
    return f"Numbers: {list(numbers)}\nTarget: {int(target)}"


def problem_key(numbers: Sequence[int], target: int) -> str:
    return ",".join(str(int(n)) for n in sorted(numbers)) + "=" + str(int(target))


def _digest(numbers: Sequence[int], target: int) -> bytes:
    return hashlib.sha256((_SALT + problem_key(numbers, target)).encode("utf-8")).digest()


def is_held_out(numbers: Sequence[int], target: int) -> bool:
    """Whether the problem is kept from training: its hash bucket is the evaluation one, or it
    is a problem of d1's test file."""
    d = _digest(numbers, target)
    return int.from_bytes(d[:8], "big") % HELD_OUT_BUCKETS == 0 or d[:5].hex() in _TEST_FINGERPRINTS


def make_problem(rng: random.Random) -> dict | None:
    """Three numbers, a random expression over them and its value as the target; None when
    the value is not a whole number in range (or the expression divides by zero)."""
    from lm_eval_temporal.answers.arith import parse_arith

    numbers = [rng.randint(*NUMBERS) for _ in range(3)]
    a, b, c = rng.sample(numbers, 3)
    o1, o2 = rng.choice(_OPS), rng.choice(_OPS)
    expr = f"({a}{o1}{b}){o2}{c}" if rng.random() < 0.5 else f"{a}{o1}({b}{o2}{c})"
    parsed = parse_arith(expr)
    if parsed is None:
        return None
    value = parsed[0]
    if value.denominator != 1 or not TARGETS[0] <= value <= TARGETS[1]:
        return None
    return {"numbers": numbers, "target": int(value), "solution": expr}


def training_stream(seed: int = 0) -> Iterator[dict]:
    """Endless seeded stream of distinct training problems; never yields a held-out one."""
    rng = random.Random(f"countdown-train-{seed}")
    seen: set[str] = set()
    while True:
        p = make_problem(rng)
        if p is None or is_held_out(p["numbers"], p["target"]):
            continue
        key = problem_key(p["numbers"], p["target"])
        if key not in seen:
            seen.add(key)
            yield p
