"""Command-line flags generated from the config dataclasses (the dataclass holds the only default)."""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``tuple[int, int] | None`` -> tuple[int, int]."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """One ``--field-name`` flag per field of ``cls``; unset flags keep the dataclass default."""
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if tp is bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"(default: {default})")
        elif typing.get_origin(tp) is tuple:
            elem = typing.get_args(tp)[0]
            group.add_argument(flag, dest=f.name, type=elem, nargs=len(typing.get_args(tp)), default=None,
                               metavar=f.name.upper(), help=f"(default: {default})")
        else:
            group.add_argument(flag, dest=f.name, type=tp, default=None, help=f"(default: {default})")


def from_args(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the flags that were given (others keep their defaults)."""
    kwargs = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if getattr(ns, f.name, None) is not None}
    kwargs.update(overrides)
    for f in dataclasses.fields(cls):
        if isinstance(kwargs.get(f.name), list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)


def from_dict(cls: type[T], d: dict, *, source: str) -> T:
    """Build ``cls`` from a dict, rejecting unknown keys with the list of valid ones."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
