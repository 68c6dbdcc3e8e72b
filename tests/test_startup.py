"""The startup hook: lazy, fail-safe, and it makes lm-eval 0.4.13 see our model and tasks."""

import os
import subprocess
import sys
import textwrap

import pytest

OURS = ["arith_chain", "countdown", "gsm8k_temporal", "math500", "svamp", "temporal_math"]


def run(code: str, env_extra: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_bare_interpreter_imports_nothing_heavy():
    r = run("import sys; print(sorted(m for m in ('lm_eval', 'torch', 'transformers', 'datasets', 'lm_eval_temporal') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_hook_is_installed_and_can_be_disabled():
    code = "import sys; print(any(type(f).__name__ == '_LmEvalTemporalHook' for f in sys.meta_path))"
    assert run(code).stdout.strip() == "True"
    assert run(code, {"LM_EVAL_TEMPORAL_DISABLE_HOOK": "1"}).stdout.strip() == "False"


def test_registry_knows_llada_temporal_and_builtins_without_loading_torch():
    code = textwrap.dedent("""
        import sys
        from lm_eval.api.registry import model_registry
        print('llada_temporal' in model_registry, 'hf' in model_registry, 'torch' in sys.modules)
    """)
    r = run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "False"]


def test_get_model_resolves_backend_class():
    r = run("from lm_eval.api.registry import get_model; print(get_model('llada_temporal').__name__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "LLaDATemporalLM"


def test_task_manager_lists_our_tasks_and_keeps_include_path():
    code = textwrap.dedent("""
        from lm_eval.tasks import TaskManager
        tm = TaskManager()
        print(all(t in tm.all_tasks for t in %r), 'gsm8k' in tm.all_tasks)
    """ % (OURS,))
    r = run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True"]


def test_disabled_hook_leaves_lm_eval_untouched():
    r = run("from lm_eval.api.registry import get_model\ntry:\n get_model('llada_temporal'); print('found')\nexcept ValueError: print('absent')",
            {"LM_EVAL_TEMPORAL_DISABLE_HOOK": "1"})
    assert r.stdout.strip() == "absent", r.stderr


def test_register_by_hand_when_disabled():
    r = run("import lm_eval_temporal; lm_eval_temporal.register()\nfrom lm_eval.api.registry import get_model; print(get_model('llada_temporal').__name__)",
            {"LM_EVAL_TEMPORAL_DISABLE_HOOK": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "LLaDATemporalLM"


def test_broken_lm_eval_never_breaks_python(tmp_path):
    fake = tmp_path / "lm_eval" / "api"
    fake.mkdir(parents=True)
    (tmp_path / "lm_eval" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "registry.py").write_text("raise RuntimeError('broken lm_eval')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    assert run("print('ok')", env).stdout.strip() == "ok"
    r = run("import lm_eval.api.registry", env)
    assert "broken lm_eval" in r.stderr  # the user's own error, unchanged
    r = run("import sys; sys.modules['lm_eval'] = None\nprint('fine')")
    assert r.stdout.strip() == "fine"


@pytest.mark.slow
def test_cli_ls_tasks_lists_ours():
    r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "lm_eval"), "ls", "tasks"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for t in OURS:
        assert f"|{t} " in r.stdout


def test_only_the_lm_eval_command_prints_user_errors_without_a_traceback():
    """A program that uses lm_eval as a library keeps its tracebacks; the lm_eval command prints
    a UserError's message alone (an argument error, unreachable data)."""
    from lm_eval_temporal._startup import is_lm_eval_command

    assert is_lm_eval_command("/venv/bin/lm_eval") and is_lm_eval_command("/venv/bin/lm-eval")
    assert is_lm_eval_command(os.path.join("/venv/lib/site-packages", "lm_eval", "__main__.py"))
    assert not is_lm_eval_command("/usr/bin/python") and not is_lm_eval_command("-c")
    raise_it = textwrap.dedent("""
        import sys
        {setup}
        import lm_eval.api.registry
        from lm_eval_temporal.options import parse_options
        parse_options({{"vote": "majority"}})
    """)
    library = run(raise_it.format(setup=""))
    assert "Traceback" in library.stderr and "OptionError: model argument vote='majority'" in library.stderr
    command = run(raise_it.format(setup="sys.argv[0] = '/venv/bin/lm_eval'"))
    assert command.returncode == 1
    assert command.stderr.strip().splitlines() == [
        "lm_eval: error: model argument vote='majority': expected one of none, fixed, linear, exp, gated"]
    other = run(raise_it.format(setup="sys.argv[0] = '/venv/bin/lm_eval'").replace(
        'parse_options({"vote": "majority"})', 'raise KeyError("a bug")'))
    assert "Traceback" in other.stderr and "KeyError: 'a bug'" in other.stderr
