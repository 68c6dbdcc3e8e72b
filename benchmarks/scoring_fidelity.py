"""Scoring fidelity: our answer checker vs d1's on real LLaDA-8B-Instruct generations.

Reads d1's published generations (gen_length 256, 128 steps; see the data README) from
``<data>/llada_generations/`` and prints, per task, the accuracy of
``lm_eval_temporal.answers.is_correct`` next to a re-implementation of d1's own rules
("d1-strict": first numeric box / ``<answer>`` tag and float equality for GSM8K, last box and
the Hendrycks string normaliser for MATH500, last box + ``\\d+`` multiset + Python arithmetic for
Countdown) and the figures d1 reports for these files. ``--details`` lists every item on which
the two disagree.

    python benchmarks/scoring_fidelity.py [--data DIR] [--details]

``DIR`` defaults to ``$LM_EVAL_TEMPORAL_DATA``, else ``../shared/data`` next to the checkout.
The last line is ``fidelity gsm8k=A math500=B countdown=C`` (our accuracies, percent).
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lm_eval_temporal import answers  # noqa: E402

DATA_ENV = "LM_EVAL_TEMPORAL_DATA"
D1_REPORTED = {"gsm8k": 76.37, "math500": 32.40, "countdown": 19.53}
FILE_GLOB = "{task}_instruct_256_128_*_generations.json"


def default_data_dir() -> Path:
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else (REPO.parent / "shared" / "data")


def generation_files(data_dir: Path, task: str) -> list[Path]:
    folder = Path(data_dir) / "llada_generations"
    files = sorted(Path(p) for p in glob.glob(str(folder / FILE_GLOB.format(task=task))))
    if not files:
        raise FileNotFoundError(
            f"no {FILE_GLOB.format(task=task)} in {folder}; pass --data DIR or set {DATA_ENV} to a "
            "folder laid out like ../shared/data (with llada_generations/)"
        )
    return files


def load_items(data_dir: Path, task: str) -> list[dict[str, Any]]:
    items = []
    for path in generation_files(data_dir, task):
        with path.open(encoding="utf-8") as f:
            for i, g in enumerate(json.load(f)["generations"]):
                items.append({"id": f"{path.name.split('_instruct')[0]}/{path.name.split('_')[4]}#{i}",
                              "text": g["generations"], "gold": g["ground_truth"], "question": g.get("question", "")})
    return items


# ----------------------------------------------------------------------------- d1-strict rules
# Written from d1's eval/parse_and_get_acc.py and eval/parser_helper.py (its documented
# behaviour, including its quirks), so that the comparison is item by item.

_D1_NUM = re.compile(r"-?\d+\.?\d*")


def d1_gsm8k(text: str, gold: float) -> tuple[Any, bool]:
    parsed = None
    for content in re.findall(r"\\boxed{(.*?)}", text):  # first box, cut at its first "}"
        content = content.strip()
        if not content or re.fullmatch(r"\.+", content):
            continue
        try:
            parsed = float(content)
            break
        except ValueError:
            nums = _D1_NUM.findall(content)
            if nums:
                parsed = float(nums[0])
                break
    if parsed is None:
        m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        body = m.group(1).strip() if m else ""
        if body:
            try:
                parsed = float(body)
            except ValueError:
                nums = _D1_NUM.findall(body)
                if nums:
                    parsed = float(nums[-1])
    return parsed, parsed is not None and parsed == gold


def _d1_last_boxed(s: str) -> str | None:
    if "\\boxed " in s:
        return "\\boxed " + s.split("\\boxed ")[-1].split("$")[0]
    idx = s.rfind("\\boxed")
    if idx < 0:
        idx = s.rfind("\\fbox")
        if idx < 0:
            return s  # d1 then treats the whole generation as the answer
    depth = 0
    for i in range(idx, len(s)):
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                return s[idx : i + 1]
    return None


def _d1_unbox(s: str) -> str:
    if "\\boxed " in s:
        if not s.startswith("\\boxed "):
            raise ValueError("not a box")
        return s[len("\\boxed "):]
    if s.startswith("\\boxed{") and s.endswith("}"):
        return s[len("\\boxed{"):-1]
    return s


def _hendrycks_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for p in parts[1:]:
        out += "\\frac"
        if p.startswith("{"):
            out += p
            continue
        if len(p) < 2:
            return s
        a, b, rest = p[0], p[1], p[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _hendrycks_sqrt(s: str) -> str:
    if "\\sqrt" not in s:
        return s
    parts = s.split("\\sqrt")
    out = parts[0]
    for p in parts[1:]:
        out += "\\sqrt" + (p if p.startswith("{") else "{" + p[0] + "}" + p[1:])
    return out


def _hendrycks_normalise(s: str) -> str:
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:
        parts = s.split("\\text{ ")
        if len(parts) != 2:
            raise ValueError("units")
        s = parts[0]
    s = s.replace("\\%", "").replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    eq = s.split("=")
    if len(eq) == 2 and len(eq[0]) <= 2:
        s = eq[1]
    s = _hendrycks_sqrt(s).replace(" ", "")
    s = _hendrycks_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    ab = s.split("/")
    if len(ab) == 2 and ab[0].isdigit() and ab[1].isdigit() and s == f"{int(ab[0])}/{int(ab[1])}":
        s = "\\frac{" + ab[0] + "}{" + ab[1] + "}"
    return s


def d1_math(text: str, gold: str) -> tuple[Any, bool]:
    try:
        boxed = _d1_last_boxed(text)
        parsed = _d1_unbox(boxed) if boxed is not None else None
        if boxed is None:
            raise ValueError("unclosed box")
    except Exception:  # noqa: BLE001 - d1 swallows everything here too
        parsed = None
    if not parsed:
        m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        if m:
            parsed = m.group(1).strip()
    if parsed is None:
        return None, False
    try:
        return parsed, _hendrycks_normalise(parsed) == _hendrycks_normalise(gold)
    except Exception:  # noqa: BLE001
        return parsed, parsed == gold


def _py_arith(expr: str) -> float:
    """Python-semantics arithmetic over + - * / // ** (d1 calls eval on such strings); via
    ast with small bounds instead of eval."""
    if not re.match(r"^[\d+\-*/().\s]+$", expr):
        return float("inf")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return float("inf")

    def ev(n: ast.AST) -> float:
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and type(n.value) in (int, float):
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = ev(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp):
            a, b = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Add):
                return a + b
            if isinstance(n.op, ast.Sub):
                return a - b
            if isinstance(n.op, ast.Mult):
                return a * b
            if isinstance(n.op, ast.Div):
                return a / b
            if isinstance(n.op, ast.FloorDiv):
                return a // b
            if isinstance(n.op, ast.Pow) and abs(b) <= 64 and abs(a) <= 10**6:
                return a**b
        raise ValueError("unsupported")

    try:
        return ev(tree)
    except Exception:  # noqa: BLE001
        return float("inf")


def d1_countdown(text: str, gold: list) -> tuple[Any, bool]:
    numbers, target = gold
    try:
        equation = _d1_unbox(_d1_last_boxed(text))  # None -> TypeError, like d1
    except Exception:  # noqa: BLE001
        m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
        equation = m.group(1).strip() if m else text
    equation = equation.replace("\\div", "/").replace("\\times", "*").replace("\\cdot", "*")
    m = re.search(r"([0-9+\-*/() ]+)=[0-9. ]+", equation)
    if m:
        equation = m.group(1).strip()
    used = sorted(int(n) for n in re.findall(r"\d+", equation))
    if used != sorted(numbers):
        return equation, False
    return equation, abs(_py_arith(equation) - target) < 1e-5


D1_RULES = {"gsm8k": d1_gsm8k, "math500": d1_math, "countdown": d1_countdown}


# ----------------------------------------------------------------------------- comparison


@dataclass
class TaskResult:
    task: str
    n: int = 0
    ours: int = 0
    strict: int = 0
    only_ours: list[dict[str, Any]] = field(default_factory=list)
    only_strict: list[dict[str, Any]] = field(default_factory=list)

    def pct(self, k: int) -> float:
        return 100.0 * k / self.n if self.n else 0.0


def score_task(data_dir: Path, task: str) -> TaskResult:
    res = TaskResult(task)
    for item in load_items(data_dir, task):
        ours = answers.is_correct(item["text"], item["gold"], task)
        d1_answer, strict = D1_RULES[task](item["text"], item["gold"])
        res.n += 1
        res.ours += ours
        res.strict += strict
        if ours != strict:
            row = {"id": item["id"], "extracted": answers.extract_answer(item["text"], task),
                   "d1_extracted": d1_answer, "gold": item["gold"]}
            (res.only_ours if ours else res.only_strict).append(row)
    return res


def score(data_dir: Path | None = None) -> dict[str, TaskResult]:
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    return {task: score_task(data_dir, task) for task in D1_REPORTED}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help=f"folder with llada_generations/ (default: ${DATA_ENV}, else ../shared/data)")
    ap.add_argument("--details", action="store_true", help="list the items where ours and d1-strict disagree")
    args = ap.parse_args(argv)
    data_dir = args.data or default_data_dir()
    try:
        results = score(data_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'task':<10} {'n':>5} {'ours':>8} {'d1-strict':>10} {'d1 reported':>12} {'ours-only':>10} {'d1-only':>8}")
    for task, r in results.items():
        print(f"{task:<10} {r.n:>5} {r.pct(r.ours):>7.2f}% {r.pct(r.strict):>9.2f}% {D1_REPORTED[task]:>11.2f}% "
              f"{len(r.only_ours):>10} {len(r.only_strict):>8}")
    if args.details:
        for task, r in results.items():
            for label, rows in (("correct for ours only", r.only_ours), ("correct for d1-strict only", r.only_strict)):
                for row in rows:
                    print(f"[{task}] {label}: {row['id']} ours={row['extracted']!r} d1={row['d1_extracted']!r} "
                          f"gold={row['gold']!r}")
    print("fidelity " + " ".join(f"{t}={r.pct(r.ours):.2f}" for t, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
