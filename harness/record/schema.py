"""Dataclasses to and from JSON-able dicts, with one validation on the way in.

``from_dict(cls, data, where)`` builds a dataclass from parsed JSON and checks every field
against its type hint: nested dataclasses, ``list[...]``, ``tuple[X, ...]``, ``dict[str, X]``,
``X | None``, and the scalars ``str``, ``int``, ``float`` (finite), ``bool``; ``dict``,
``list`` and ``Any`` are taken as they are. A field that is missing takes its default, or is
an error if it has none; unknown keys are ignored, so that a newer file still loads. Any
mismatch raises ``SchemaError`` with one line naming the path of the field, e.g.
``cases[3].timing.samples_s[2]: expected a finite number, got 'x'``.

``to_dict(obj)`` is the inverse (tuples become lists).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any, Union

from implementations.problem import BenchError


class SchemaError(BenchError):
    """Data that does not have the declared shape."""


def to_dict(obj) -> Any:
    """A dataclass (or a structure of them) as JSON-able dicts and lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


@cache
def hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls, data, where: str):
    """An instance of the dataclass ``cls`` from ``data``, checked field by field."""
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected an object, got {describe(data)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = convert(hints(cls)[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SchemaError(f"{where}: missing field {f.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}: {exc}") from None


def convert(tp, value, where: str):
    """``value`` checked against the type hint ``tp`` (and converted where JSON differs)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return convert_union(args, value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        return convert_sequence(tp, origin or tp, args, value, where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {describe(value)}")
        if not args:
            return value
        return {str(k): convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    return convert_scalar(tp, value, where)


def convert_union(args, value, where: str):
    if value is None:
        if type(None) in args:
            return None
        raise SchemaError(f"{where}: expected a value, got null")
    errors = []
    for option in (a for a in args if a is not type(None)):
        try:
            return convert(option, value, where)
        except SchemaError as exc:
            errors.append(exc)
    raise errors[0]


def convert_sequence(tp, origin, args, value, where: str):
    if not isinstance(value, (list, tuple)):
        raise SchemaError(f"{where}: expected a list, got {describe(value)}")
    if not args:
        return origin(value)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise SchemaError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    items = [convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def convert_scalar(tp, value, where: str):
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SchemaError(f"{where}: expected true or false, got {describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SchemaError(f"{where}: expected an integer, got {describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise SchemaError(f"{where}: expected a finite number, got {describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SchemaError(f"{where}: expected a string, got {describe(value)}")
    raise TypeError(f"schema: unsupported type {tp!r} at {where}")  # a bug in a declaration


def describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
