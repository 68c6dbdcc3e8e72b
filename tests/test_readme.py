"""The README's Python API example runs and prints what the README says it prints."""

import ast
import contextlib
import io
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_python_api_example_prints_what_it_says():
    section = README[README.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    first, steps, score = out.getvalue().splitlines()
    assert first == "10 10 0.000" and first in code
    assert len(ast.literal_eval(steps)) == 32
    assert score.startswith("Score(final_pass=True, ever_pass=True, vote_pass=True")
