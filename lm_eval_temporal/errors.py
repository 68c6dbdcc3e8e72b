"""Errors in what the user asked for, as opposed to bugs.

Their message says everything (which argument or file, what was expected, what to do), so the
``lm_eval`` command prints it alone instead of a traceback through lm-eval's internals
(:func:`lm_eval_temporal._startup.install_clean_exit`). Each also subclasses the built-in
exception that library callers already catch.
"""

from __future__ import annotations

__all__ = ["UserError", "OptionError", "DataUnavailable"]


class UserError(Exception):
    """Marks an error whose message is the whole story for a command-line user."""


class OptionError(UserError, ValueError):
    """A ``--model_args`` value of ``llada_temporal`` that is invalid, or that cannot work with
    the tasks asked for."""


class DataUnavailable(UserError, RuntimeError):
    """A benchmark split could be read neither from the offline folder nor from the Hub."""
