"""Startup hook that makes ``lm_eval --model llada_temporal`` and our tasks work on lm-eval 0.4.13.

lm-eval 0.4.13 has no plugin discovery, so ``lm_eval_temporal_hook.pth`` (installed into
site-packages) puts a tiny finder on ``sys.meta_path`` at interpreter start. It imports
nothing, not even this module, until the program itself imports lm_eval.
Then, right after lm_eval's own modules have executed:

- ``lm_eval.api.registry``: the built-in models are registered, then ``llada_temporal`` (and
  its family-neutral name ``dllm_temporal``, the same class) as a lazy placeholder (the backend module, and torch, load only when the model is used);
  In the ``lm_eval`` command itself, an error in what the user asked for
  (:class:`lm_eval_temporal.errors.UserError`: a bad model argument, unreachable data) is
  printed as its message alone instead of a traceback through lm-eval;
- ``lm_eval.tasks.manager``: every ``TaskManager`` also scans this package's task folder, and
  with ``LM_EVAL_TEMPORAL_DATA`` set, built-in tasks whose Hub dataset that folder mirrors
  (``gsm8k`` and its ``gsm8k_cot*`` variants: ``openai/gsm8k``) read the local copy; without
  it, a failed download of those names the variable.
- and with it ``lm_eval.loggers.evaluation_tracker`` (every evaluation makes a
  ``TaskManager``, so the ``.pth`` finder need not watch one more module): after each of the
  tracker's saves (results, then each task's samples) the run's sidecar ``run_record_<date>.json`` is rewritten with the
  sha256 of every file written so far (:mod:`lm_eval_temporal.sidecar`); runs of other
  backends get none. A failure there is raised, not swallowed: a run without its record
  cannot be verified.

Set ``LM_EVAL_TEMPORAL_DISABLE_HOOK=1`` to switch it off (then use ``--include_path`` and
``lm_eval_temporal.register()`` in your own code). A failure to install a patch is printed on
stderr and otherwise ignored: a broken or missing lm_eval must never break an unrelated Python program.
"""

from __future__ import annotations

import os
import sys

MODEL_NAME = "llada_temporal"
MODEL_NAMES = (MODEL_NAME, "dllm_temporal")  # the family-neutral name serves every family too
MODEL_TARGET = "lm_eval_temporal.backend:LLaDATemporalLM"


def task_dir() -> str:
    """The folder holding our YAML task configs.

    In a checkout ``lm_eval_temporal/task_configs`` is a link to the top-level
    ``task_configs/``; wheels carry the files themselves.
    """
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "task_configs")


def register_model() -> None:
    from lm_eval.api.registry import model_registry

    # get_model() imports the built-ins only while the registry is empty, so fill it first.
    import lm_eval.models  # noqa: F401

    for name in MODEL_NAMES:
        if name not in model_registry:
            model_registry.register(name, target=MODEL_TARGET)
    if is_lm_eval_command(sys.argv[0] if sys.argv else ""):
        install_clean_exit()


def is_lm_eval_command(argv0: str) -> bool:
    """Whether this process is the ``lm_eval`` command (``lm_eval``, ``lm-eval``, ``python -m
    lm_eval``, ``accelerate launch -m lm_eval``), not a program that uses lm_eval as a library."""
    name = os.path.splitext(os.path.basename(argv0))[0]
    return name in ("lm_eval", "lm-eval") or argv0.endswith(os.path.join("lm_eval", "__main__.py"))


def install_clean_exit() -> None:
    """Print an uncaught :class:`~lm_eval_temporal.errors.UserError` as ``lm_eval: error:
    <message>`` (exit status 1); every other exception keeps its traceback."""
    previous = sys.excepthook
    if getattr(previous, "_lm_eval_temporal", False):
        return

    def excepthook(kind, exc, tb):
        # Only a module that was imported can have raised one of its errors.
        errors = sys.modules.get("lm_eval_temporal.errors")
        if errors is not None and isinstance(exc, errors.UserError):
            sys.stderr.write(f"lm_eval: error: {exc}\n")
            return
        previous(kind, exc, tb)

    excepthook._lm_eval_temporal = True
    sys.excepthook = excepthook


def patch_task_manager() -> None:
    from lm_eval.tasks import manager

    cls = manager.TaskManager
    if getattr(cls.__init__, "_lm_eval_temporal", False):
        return
    original = cls.__init__
    ours = task_dir()

    def __init__(self, *args, include_path=None, **kwargs):
        paths = [] if include_path is None else (
            list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
        )
        # Ours first, so a user's --include_path can still override one of our tasks.
        if not any(os.path.abspath(str(p)) == ours for p in paths):
            paths.insert(0, ours)
        original(self, *args, include_path=paths, **kwargs)

    __init__._lm_eval_temporal = True
    cls.__init__ = __init__
    patch_offline_datasets()
    patch_evaluation_tracker()


def patch_offline_datasets() -> None:
    from lm_eval.api.task import ConfigurableTask

    original = ConfigurableTask.download
    if getattr(original, "_lm_eval_temporal", False):
        return

    def download(self, dataset_kwargs=None, **kwargs):
        if self.config.custom_dataset is not None:
            return original(self, dataset_kwargs, **kwargs)
        from lm_eval_temporal.tasks import hub_failure, offline_mirror

        local = offline_mirror(self.DATASET_PATH, self.DATASET_NAME)
        if local is not None:
            self.dataset = local
            return None
        try:
            return original(self, dataset_kwargs, **kwargs)
        except Exception as exc:
            # lm-eval's raw hub error says nothing of the offline folder that would have served it.
            hint = hub_failure(self.DATASET_PATH, self.DATASET_NAME, exc)
            if hint is None:
                raise
            raise hint from exc

    download._lm_eval_temporal = True
    ConfigurableTask.download = download


def patch_evaluation_tracker() -> None:
    from lm_eval.loggers.evaluation_tracker import EvaluationTracker

    for name in ("save_results_aggregated", "save_results_samples"):
        original = getattr(EvaluationTracker, name)
        if getattr(original, "_lm_eval_temporal", False):
            continue

        def save(self, *args, _original=original, **kwargs):
            out = _original(self, *args, **kwargs)
            from lm_eval_temporal.sidecar import update

            update(self.output_path, str(self.general_config_tracker.model_name_sanitized),
                   getattr(self, "date_id", None))  # date_id: set by the tracker's first save
            return out

        save._lm_eval_temporal = True
        setattr(EvaluationTracker, name, save)


def register() -> None:
    """Register the backend and the task folder now (for programs that disabled the hook)."""
    register_model()
    patch_task_manager()


_AFTER_IMPORT = {
    "lm_eval.api.registry": register_model,
    "lm_eval.tasks.manager": patch_task_manager,
}


def watched_spec(finder, fullname, path=None, target=None):
    """``find_spec`` for the watched modules (called by the finder the ``.pth`` file installs):
    the real spec, its loader wrapped so that our hook runs right after the module has
    executed. ``finder`` is skipped to avoid recursion."""
    hook = _AFTER_IMPORT.get(fullname)
    if hook is None:
        return None
    for other in sys.meta_path:
        if other is finder or not hasattr(other, "find_spec"):
            continue
        spec = other.find_spec(fullname, path, target)
        if spec is not None:
            break
    else:
        return None
    loader = spec.loader
    if loader is None or not hasattr(loader, "exec_module"):
        return spec
    exec_module = loader.exec_module

    def exec_then_hook(module):
        exec_module(module)
        try:
            hook()
        except Exception as exc:  # never break lm_eval itself
            sys.stderr.write(f"lm_eval_temporal: startup hook for {fullname} failed: {exc!r}\n")

    loader.exec_module = exec_then_hook
    return spec
