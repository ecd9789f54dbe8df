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


def setting_paths(cls: type) -> dict[str, tuple[str, ...]]:
    """Every key a flat setting of the dataclass ``cls`` may use -> the field path it sets.

    A field of ``cls`` is its own name; a field of a nested config (a field typed as a
    dataclass) is reachable flat (``hidden_size``) and dotted (``encoder.hidden_size``). A
    shallower field wins over a deeper one of the same name; two nested fields of one name
    at the same depth are reachable dotted only.
    """
    paths: dict[str, tuple[str, ...]] = {}
    flat: dict[str, list[tuple[str, ...]]] = {}

    def walk(owner: type, prefix: tuple[str, ...]) -> None:
        for name, annotation in field_types(owner).items():
            path = (*prefix, name)
            paths[".".join(path)] = path
            flat.setdefault(name, []).append(path)
            if _nested_config(annotation) is not None:
                walk(_nested_config(annotation), path)

    walk(cls, ())
    for name, candidates in flat.items():
        shallowest = min(len(p) for p in candidates)
        at_depth = [p for p in candidates if len(p) == shallowest]
        if len(at_depth) == 1:
            paths.setdefault(name, at_depth[0])
    return paths


def apply_settings(
    config: Any, settings: Mapping[str, Any], *, rest_to: str | None = None, what: str = "setting"
) -> Any:
    """``config`` (a frozen dataclass) with flat ``KEY=VALUE`` settings applied: the one
    router from ``--set``, ``--config`` files and sweep settings to nested configs.

    Keys are those of `setting_paths` (``lr``, ``n_neg``, ``encoder.dropout``); each value
    is converted to its field's type (`convert`) and the rebuilt configs run their own
    checks, so every mistake is a `SettingError` naming the key. Unknown keys are refused
    with the known ones listed, unless ``rest_to`` names a mapping field that collects them
    (a bandit policy's settings, which its own config then checks).
    """
    paths = setting_paths(type(config))
    changes: dict[tuple[str, ...], Any] = {}
    rest: dict[str, Any] = {}
    for key, value in settings.items():
        path = paths.get(key)
        if path is None:
            if rest_to is None:
                # the flat names, and the dotted ones only where no flat name reaches them
                known = [
                    k for k in paths if "." not in k or paths.get(k.split(".")[-1]) != paths[k]
                ]
                raise unknown_setting(key, known, what=what)
            rest[key] = value
            continue
        changes[path] = (key, value)
    if rest:
        # on top of the mapping itself where it is given too, else of the config's
        given = changes.get((rest_to,), (rest_to, getattr(config, rest_to)))[1]
        changes[(rest_to,)] = (rest_to, {**given, **rest})
    with refused():
        return _replace(config, changes, ())


def _replace(config: Any, changes: dict[tuple[str, ...], tuple[str, Any]], prefix: tuple) -> Any:
    """``config`` with ``changes`` (path -> (the key as given, value), paths below
    ``prefix``) applied, innermost first."""
    types_ = field_types(type(config))
    own: dict[str, Any] = {}
    for name in {path[len(prefix)] for path in changes}:
        path = (*prefix, name)
        if path in changes:  # the whole field, even a nested config given as a mapping
            key, value = changes[path]
            own[name] = convert(key, value, types_[name])
        else:
            below = {p: v for p, v in changes.items() if p[: len(path)] == path}
            own[name] = _replace(getattr(config, name), below, path)
    return dataclasses.replace(config, **own) if own else config


def _nested_config(annotation: Any) -> type | None:
    """The dataclass a field holds (``SASRecConfig``), or None for a plain value."""
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return annotation
    return None


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring (the string literal under the field), on one
    line; the dataclasses' docs are the one place a setting is explained."""
    import ast
    import inspect
    import itertools
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of ``cls`` (``dataclasses.MISSING`` when required)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return dataclasses.MISSING
    raise KeyError(name)
