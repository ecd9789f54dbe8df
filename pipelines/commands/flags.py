"""Command-line flags generated from config fields, and the settings they collect.

A flag is a view of one config field: its type, choices, default and help come from the
field (`recrl.pipelines.settings.field_docs`), so a default lives once, in the config.
Flags default to "not given" and only given ones become settings; every subcommand that
runs a job also takes ``--config FILE.yaml`` and ``--set KEY=VALUE``, and the settings
are applied in that order (file, then ``--set``, then flags) by
`recrl.pipelines.settings.apply_settings`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from recrl.pipelines.commands.overrides import parse_overrides, read_settings_file
from recrl.pipelines.settings import field_default, field_docs, field_types

SETTINGS_DEST = "_config_flags"
"""Where the parser keeps the flag → setting mapping of a subcommand."""


def add_settings_options(parser: argparse.ArgumentParser, keys_help: str) -> None:
    """``--config FILE.yaml`` and ``--set KEY=VALUE``; ``keys_help`` says which keys."""
    parser.add_argument(
        "--config", type=Path, metavar="FILE.yaml",
        help=f"YAML mapping of settings ({keys_help}); --set and flags win over it",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"one setting, repeatable ({keys_help})",
    )  # fmt: skip


def add_field_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    fields: Sequence[str] | Mapping[str, str],
    *,
    required: Sequence[str] = (),
) -> None:
    """One flag per field of the dataclass ``cls``: ``fields`` lists field names (flag
    ``--field-name``) or maps a flag name to its field (``{"steps": "total_steps"}``).
    The flags' type, choices, help and shown default are the field's."""
    items = fields.items() if isinstance(fields, Mapping) else ((f, f) for f in fields)
    mapping: dict[str, str] = dict(parser.get_default(SETTINGS_DEST) or {})
    docs = field_docs(cls)
    types_ = field_types(cls)
    for flag, name in items:
        annotation = types_[name]
        default = field_default(cls, name)
        dest = f"setting_{name}"
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "metavar": name.upper()}
        help_text = docs.get(name, "").replace("``", "`")  # reST literals read as `x` in a terminal
        if default not in (dataclasses.MISSING, None) and not isinstance(default, bool):
            help_text += f" (default: {_shown(default)})"
        base, many = _scalar(annotation)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            del kwargs["metavar"]
        else:
            choices = _choices(base)
            if choices:
                kwargs["choices"] = choices
                kwargs["metavar"] = "{" + ",".join(map(str, choices)) + "}"
            kwargs["type"] = type(choices[0]) if choices else base
            if many:
                kwargs["nargs"] = "+"
        flag_name = "--" + flag.replace("_", "-")
        if flag in required:
            kwargs["required"] = True
        parser.add_argument(flag_name, help=help_text.replace("%", "%%"), **kwargs)
        mapping[dest] = name
    parser.set_defaults(**{SETTINGS_DEST: mapping})


def collect_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of the parsed arguments: ``--config`` file, then ``--set``, then the
    flags that were given (a flag not given leaves the config's default)."""
    settings: dict[str, Any] = {}
    if getattr(args, "config", None):
        settings.update(read_settings_file(args.config))
    settings.update(parse_overrides(getattr(args, "overrides", [])))
    for dest, name in (getattr(args, SETTINGS_DEST, None) or {}).items():
        value = getattr(args, dest, None)
        if value is not None:
            settings[name] = value
    return settings


def _scalar(annotation: Any) -> tuple[Any, bool]:
    """(the flag's value type, whether it takes several values) of a field annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _scalar(options[0]) if len(options) == 1 else (str, False)
    if origin in (tuple, list):
        return (args[0] if args else str), True
    if origin is Literal:
        return annotation, False
    if annotation in (int, float, str, bool):
        return annotation, False
    return str, False


def _choices(annotation: Any) -> tuple | None:
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else None


def _shown(value: Any) -> str:
    if isinstance(value, tuple | list):
        return " ".join(map(str, value))
    return str(value)


def settings_help(cls: type, *, without: Sequence[str] = (), width: int = 88) -> str:
    """An epilog section listing the setting keys of the dataclass ``cls`` (flat, as
    `recrl.pipelines.settings.setting_paths` reaches them) other than ``without`` (those
    that have flags), each with its field's doc and default: a setting that only ``--set``
    and ``--config`` reach is documented in ``--help`` too."""
    import textwrap

    from recrl.pipelines.settings import setting_paths

    paths = setting_paths(cls)
    entries = []
    for key, path in paths.items():
        owner = cls
        for name in path[:-1]:
            owner = field_types(owner)[name]
        name = path[-1]
        nested = dataclasses.is_dataclass(field_types(owner)[name])
        reached_flat = "." in key and paths.get(name) == path  # listed under its flat key
        if key in without or nested or reached_flat:
            continue
        text = field_docs(owner).get(name, "").replace("``", "`")
        default = field_default(owner, name)
        if default not in (dataclasses.MISSING, None):  # a bool's too: no --no-x shows it
            text += f" (default: {_shown(default)})"
        entries.append((key, text))
    if not entries:
        return ""
    column = min(max(len(key) for key, _ in entries), 22) + 4
    lines = ["other settings (--set KEY=VALUE, --config FILE.yaml):"]
    for key, text in entries:
        head = f"  {key:<{column - 3}} "
        if len(head) > column:  # a long key gets a line of its own
            lines.append(head.rstrip())
            head = " " * column
        lines += textwrap.wrap(text, width=width, initial_indent=head,
                               subsequent_indent=" " * column)  # fmt: skip
    return "\n".join(lines) + "\n"


SETTINGS_KEYS = "{config} fields: a flag's METAVAR in lower case, or a setting listed below"
"""``keys_help`` of `add_settings_options` for a command whose epilog has `settings_help`."""
