"""Dataclasses that check their own fields: types from the hints, ranges and choices from the metadata.

Settings and the records we write are :class:`Checked` dataclasses. Building one (from code, flags, YAML
or a JSON file) converts and checks every field, so a wrong type (``true`` for a depth, ``"two"`` for
epochs, ``64.0`` for an integer) or a value out of range fails at once with the field's path, e.g.
``train.batch_size: must be >= 1, got -4``. Callers add where the value came from (a flag, a file).
"""
from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from functools import lru_cache
from typing import Any, Callable

from ..errors import ConfigError


class FieldError(ConfigError):
    """A field that does not fit its type or range; ``path`` is its dotted name, ``reason`` the problem."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path, self.reason = path, reason


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
            min: float | None = None, max: float | None = None, gt: float | None = None,
            check: Callable[[Any], str | None] | None = None, flag: bool = True,
            default_factory: Callable[[], Any] | None = None, required: bool = False) -> Any:
    """A dataclass field with its help, allowed values (``choices``), range (``min`` / ``max`` inclusive,
    ``gt`` exclusive) and an optional ``check(value) -> problem or None``; ``flag=False`` keeps it off the
    command line; ``required=True``: a file read by :func:`from_dict` must give it (the default serves code
    that builds the object, not a file that lacks the key)."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "gt": gt, "check": check, "flag": flag,
            "required": required}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@lru_cache(maxsize=None)
def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(value: Any) -> str:
    return f"{value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _union_args(tp: Any) -> tuple | None:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return None


def convert(tp: Any, value: Any, path: str = "") -> Any:
    """``value`` as type ``tp`` (JSON lists become tuples where a tuple is asked for, ints become floats),
    or :class:`FieldError`. Booleans are never numbers, floats never integers."""
    if tp is Any or tp is object:
        return value
    args = _union_args(tp)
    if args is not None:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return convert(a, value, path)
            except FieldError as e:
                errors.append(e.reason)
        raise FieldError(path, errors[0] if len(errors) == 1 else " or ".join(errors))
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise FieldError(path, f"must be one of {', '.join(map(str, typing.get_args(tp)))}; got {_describe(value)}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise FieldError(path, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(path, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(path, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise FieldError(path, f"expected a string, got {_describe(value)}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise FieldError(path, f"must be one of {', '.join(m.value for m in tp)}; got {_describe(value)}") from None
    if origin is tuple:
        elems = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise FieldError(path, f"expected a list, got {_describe(value)}")
        if len(elems) == 2 and elems[1] is Ellipsis:
            return tuple(convert(elems[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(elems):
            raise FieldError(path, f"expected {len(elems)} values, got {len(value)}")
        return tuple(convert(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(elems, value)))
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise FieldError(path, f"expected a list, got {_describe(value)}")
        (elem,) = typing.get_args(tp) or (Any,)
        return [convert(elem, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise FieldError(path, f"expected a mapping, got {_describe(value)}")
        key_t, val_t = typing.get_args(tp) or (Any, Any)
        return {convert(key_t, k, path): convert(val_t, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise FieldError(path, f"expected a mapping, got {_describe(value)}")
        return from_dict(tp, value, path)
    raise TypeError(f"{path}: no conversion for type {tp!r}")  # a bug in a dataclass, not bad input


def from_dict(cls: type, data: dict, path: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys and missing required fields are errors."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise FieldError(path, f"unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(names)}")
    fields = dataclasses.fields(cls)
    no_default = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in no_default if n not in data]
    if missing:
        raise FieldError(path, f"missing key(s) {', '.join(missing)}")
    try:
        obj = cls(**data)  # the values given are checked first: a wrong one is the likelier fault
    except FieldError as e:
        raise FieldError(f"{path}.{e.path}" if path and e.path else (path or e.path), e.reason) from None
    missing = [f.name for f in fields if f.metadata.get("required") and f.name not in data]
    if missing:
        raise FieldError(path, f"missing key(s) {', '.join(missing)}")
    return obj


def check_value(f: dataclasses.Field, value: Any) -> str | None:
    """The problem with ``value`` for field ``f``'s choices and range, or None."""
    m = f.metadata
    if value is None:
        return None
    choices = m.get("choices")
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}; got {_describe(value)}"
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if isinstance(v, float) and math.isnan(v) and any(m.get(k) is not None for k in ("min", "max", "gt")):
            return "must be a number, got nan"
        if m.get("min") is not None and v < m["min"]:
            return f"must be >= {m['min']}, got {v}"
        if m.get("max") is not None and v > m["max"]:
            return f"must be <= {m['max']}, got {v}"
        if m.get("gt") is not None and v <= m["gt"]:
            return f"must be > {m['gt']}, got {v}"
    if m.get("check") is not None:
        return m["check"](value)
    return None


class Checked:
    """Mixin for dataclasses: every field is converted to its type and checked when the object is built;
    a subclass adds cross-field checks in ``validate()`` (raise :class:`FieldError`)."""

    def __post_init__(self) -> None:
        h = hints(type(self))
        for f in dataclasses.fields(self):
            value = convert(h[f.name], getattr(self, f.name), f.name)
            problem = check_value(f, value)
            if problem:
                raise FieldError(f.name, problem)
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        pass


def to_json(obj: Any) -> Any:
    """Plain JSON data from dataclasses, enums and tuples (recursively)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj
