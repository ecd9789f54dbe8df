"""Checking ``KEY=VALUE`` settings against the typed config dataclasses they fill.

Every command that takes settings (``--set``, a ``--config`` file, a study's ``fixed``)
routes them to dataclass fields; this module makes the mistakes one-line `SettingError`s
that name the setting: an unknown key (with the closest known one), a value of the wrong
type (with the expected type), or a value the config's own checks refuse. Types are read
from the field annotations, so a new field is checked without new code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Any, Literal

from recrl.pipelines.errors import SettingError


def unknown_setting(key: str, known: Iterable[str], *, what: str = "setting") -> SettingError:
    """``unknown setting 'lrr' (did you mean 'lr'?)`` and the known keys."""
    known = sorted(set(known))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SettingError(f"unknown {what} {key!r}{hint}; known: {', '.join(known)}")


def check_known(settings: Iterable[str], known: Iterable[str], *, what: str = "setting") -> None:
    """`unknown_setting` for the first key of ``settings`` not in ``known``."""
    known = set(known)
    for key in sorted(set(settings) - known):
        raise unknown_setting(key, known, what=what)


@cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def check_types(cls: type, settings: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """``settings`` for fields of the dataclass ``cls``, each checked against its annotation
    and converted where the conversion is lossless (an int for a float, a list for a tuple,
    ``"1e-3"`` for a float). Unknown keys and wrong types raise `SettingError`."""
    types_ = field_types(cls)
    check_known(settings, types_)
    return {key: convert(f"{prefix}{key}", value, types_[key]) for key, value in settings.items()}


def convert(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as a ``annotation``, or `SettingError` naming ``name``."""
    ok, converted = _convert(value, annotation)
    if not ok:
        raise SettingError(
            f"setting {name}: expected {type_name(annotation)}, got {value!r} "
            f"({type(value).__name__})"
        )
    return converted


def build(cls: type, **kwargs: Any) -> Any:
    """``cls(**kwargs)`` with the types checked first and the config's own ``ValueError``s
    (out-of-range values) re-raised as `SettingError`."""
    checked = check_types(cls, kwargs)
    with refused():
        return cls(**checked)


@contextlib.contextmanager
def refused() -> Iterator[None]:
    """Within: a config's ``ValueError``/``TypeError`` becomes a `SettingError` (its message
    already names the setting and the value)."""
    try:
        yield
    except SettingError:
        raise
    except (ValueError, TypeError) as error:
        raise SettingError(str(error)) from error


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild the dataclass ``cls`` from ``dataclasses.asdict`` output read back from JSON
    (nested dataclasses from dicts, tuples from lists)."""
    return build(cls, **data)


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


def _convert(value: Any, annotation: Any) -> tuple[bool, Any]:
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return True, value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in sorted(args, key=lambda a: a is str):  # str last: "1e-3" is a float
            ok, converted = _convert(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return value in args, value
    if annotation is type(None):
        return value is None, value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int | float):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return True, value
        if isinstance(value, Mapping):
            return True, from_dict(annotation, value)
        return False, value
    if origin in (tuple, list) or annotation in (tuple, list):
        if not isinstance(value, list | tuple):
            return False, value
        item = args[0] if args and (origin is list or args[-1] is Ellipsis) else Any
        items = [_convert(v, item) for v in value]
        if not all(ok for ok, _ in items):
            return False, value
        return True, (tuple if (origin or annotation) is tuple else list)(v for _, v in items)
    if origin in (dict, Mapping) or annotation is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if isinstance(annotation, type):
        return isinstance(value, annotation), value
    return True, value  # an annotation this checker does not know: the config checks it
