"""One way to turn raw settings (command-line strings, YAML values) into typed dataclass fields.

A settings dataclass declares each field with :func:`option` (or :func:`like`, to take another
class's rule for a field of the same meaning); :func:`coerce_fields` then converts a mapping of
raw values by the fields' annotations (``bool``, ``int``, ``float``, ``str``, ``list[str]``,
``tuple[float, ...]``, each possibly ``| None``) and checks the declared choices and bounds,
and :func:`check_fields` checks an object built in code by the same rules. Every error names
the field, the value and what it accepts, in the same words for both. Torch-free, so settings
are checked before a model is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass
from functools import lru_cache
from typing import Any

__all__ = ["Rule", "option", "like", "coerce_fields", "check_fields", "check_names"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NULLS = ("null", "none", "~")  # strings that mean None (YAML's own null words)
_KEY = "lm_eval_temporal.option"  # the Rule's key in a field's metadata
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Rule:
    """What one field accepts beyond its type. For a list or tuple field the choices and bounds
    apply to every item. ``parse`` rewrites the raw value first (e.g. ``8:5:3`` -> three items)
    and may raise ValueError with the "expected ..." part of the message."""

    choices: tuple[str, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    parse: Callable[[Any], Any] | None = None

    def bounds(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi}"
        return ""

    def within(self, x: float) -> bool:
        above = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        return above and (self.hi is None or (x < self.hi if self.hi_open else x <= self.hi))


def _field(default: Any, rule: Rule) -> Any:
    meta = {_KEY: rule}
    if isinstance(default, list):  # a mutable default must not be shared between instances
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option(
    default: Any = MISSING,
    *,
    choices: tuple[str, ...] | None = None,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """A dataclass field with its rule in the metadata (no ``default``: a required field)."""
    return _field(default, Rule(tuple(choices) if choices else None, lo, hi, lo_open, hi_open, parse))


def like(cls: type, name: str, default: Any = MISSING) -> Any:
    """A field with the rule of ``cls.name`` and its default (or ``default``): the same setting
    declared in another settings class is checked the same way."""
    f = _fields(cls)[name]
    if default is MISSING:
        default = f.default_factory() if f.default_factory is not MISSING else f.default
    return _field(default, f.metadata.get(_KEY, Rule()))


@lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _kind(hint: Any) -> tuple[Any, Any, bool]:
    """(container or None, item type, optional) of an annotation."""
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        optional = type(None) in args
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        return origin, typing.get_args(hint)[0], optional
    return None, hint, optional


class _Invalid(ValueError):
    """Carries the "expected ..." part of a message; the caller adds the field and value."""


def _scalar(kind: type, v: Any, rule: Rule) -> Any:
    bad = _Invalid(f"expected {_TYPE_WORDS[kind]}")
    is_str = isinstance(v, str)
    if kind is bool:
        if isinstance(v, bool):
            return v
        if is_str and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        raise bad
    if kind is str:
        if not is_str and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise bad
        return str(v).strip() if rule.choices is not None else str(v)
    if isinstance(v, bool) or not (is_str or isinstance(v, (int, float))):
        raise bad
    if kind is int:
        if isinstance(v, float) and not v.is_integer():
            raise bad
        try:
            out = int(v.strip()) if is_str else int(v)
        except ValueError:
            raise bad from None
    else:
        try:
            out = float(v.strip()) if is_str else float(v)  # "1e-5": YAML 1.1 reads it as a string
        except ValueError:
            raise bad from None
        if not math.isfinite(out):
            raise _Invalid("expected a finite number")
    if not rule.within(out):
        raise _Invalid(f"expected {_TYPE_WORDS[kind]} {rule.bounds()}")
    return out


def _items(v: Any) -> list[Any]:
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("[") and s.endswith("]"):
            s = s[1:-1]
        return [x for x in (p.strip().strip("'\"") for p in s.split(",")) if x]
    if isinstance(v, (list, tuple)):
        return list(v)
    raise _Invalid("expected a list (YAML list or a,b,c)")


def _convert(hint: Any, v: Any, rule: Rule) -> Any:
    container, kind, _ = _kind(hint)
    if rule.parse is not None:
        v = rule.parse(v)
    if container is None:
        out = _scalar(kind, v, rule)
        if rule.choices is not None and out not in rule.choices:
            raise _Invalid(f"expected one of {', '.join(rule.choices)}")
        return out
    items = [_scalar(kind, x, rule) for x in _items(v)]
    bad = [x for x in items if rule.choices is not None and x not in rule.choices]
    if bad:
        raise _Invalid(f"unknown value(s) {', '.join(map(repr, bad))}; accepted: {', '.join(rule.choices)}")
    return container(items)


def _is_null(v: Any, kind: Any, rule: Rule) -> bool:
    if v is None:
        return True
    if not isinstance(v, str) or (rule.choices is not None and v.strip() in rule.choices):
        return False  # vote=none is a choice, not a null
    s = v.strip().lower()
    # "" stays a string where a string is expected (gen_prefix: "").
    return s in _NULLS or (not s and kind is not str)


def check_names(cls: type, names: typing.Iterable[str], *, unknown_label: str,
                error: type[ValueError] = ValueError) -> None:
    """Raise ``error`` for names that are not fields of ``cls``, with the closest matches and
    the accepted names. ``unknown_label`` is the message's start, with ``{names}`` (plain) or
    ``{quoted}`` where the unknown names go."""
    known = list(_fields(cls))
    unknown = sorted(str(n) for n in names if n not in _fields(cls))
    if not unknown:
        return
    tips = {n: difflib.get_close_matches(n, known, n=3) for n in unknown}
    tips = {n: c for n, c in tips.items() if c}
    said = [" or ".join(c) + ("" if len(unknown) == 1 else f" (for {n})") for n, c in tips.items()]
    hint = f" Did you mean {'; '.join(said)}?" if said else ""
    head = unknown_label.format(names=", ".join(unknown), quoted=", ".join(map(repr, unknown)))
    raise error(f"{head}.{hint} Accepted: {', '.join(known)}")


def coerce_fields(cls: type, values: Mapping[str, Any], *, where: str = "", unknown_label: str,
                  error: type[ValueError] = ValueError) -> dict[str, Any]:
    """``values`` (strings or YAML-typed) converted to the types and rules of ``cls``'s fields.

    ``where`` starts every value message (``"model argument "``, ``"c.yaml: "``); null words
    and None are None for ``| None`` fields and an error elsewhere. Raises ``error``."""
    check_names(cls, values, unknown_label=unknown_label, error=error)
    out: dict[str, Any] = {}
    for name, v in values.items():
        container, kind, _ = _kind(_hints(cls)[name])
        out[name] = _checked(cls, name, None if _is_null(v, list if container else kind, _rule(cls, name)) else v,
                             where, error)
    return out


def check_fields(obj: Any, *, error: type[ValueError] = ValueError) -> None:
    """Raise ``error`` unless every field of the dataclass ``obj`` (built in code, so nothing is
    converted: no strings for numbers, no floats for integers) keeps its type and rule."""
    for f in dataclasses.fields(obj):
        _checked(type(obj), f.name, getattr(obj, f.name), "", error, typed=True)


def _typed(kind: Any, v: Any) -> bool:
    """Whether a value has its field's type (an int is a number, a bool is not)."""
    if kind in (bool, str):
        return isinstance(v, kind)
    if kind in (int, float):
        return not isinstance(v, bool) and isinstance(v, (int, float) if kind is float else int)
    return True


def _rule(cls: type, name: str) -> Rule:
    return _fields(cls)[name].metadata.get(_KEY, Rule())


def _checked(cls: type, name: str, v: Any, where: str, error: type[ValueError], typed: bool = False) -> Any:
    """``v`` (None: null) converted by the field's type and checked by its rule; ``typed``: a
    scalar must have the type already."""
    hint = _hints(cls)[name]
    container, kind, optional = _kind(hint)
    if v is None:
        if not optional:
            raise error(f"{where}{name} cannot be null")
        return None
    try:
        if typed and container is None and not _typed(kind, v):
            raise _Invalid(f"expected {_TYPE_WORDS[kind]}")
        return _convert(hint, v, _rule(cls, name))
    except ValueError as exc:
        raise error(f"{where}{name}={v!r}: {exc}{' or null' if optional else ''}") from None
