"""``--set KEY=VALUE`` arguments, shared by the subcommands that take them."""

from __future__ import annotations

from pathlib import Path

from recrl.pipelines.errors import SettingError, UserError


def parse_overrides(pairs: list[str]) -> dict:
    """``["n_neg=20", "lr=1e-3"]`` -> ``{"n_neg": 20, "lr": 0.001}`` (values read as YAML)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise SettingError(f"--set {key.strip()}: {value!r} is not a value ({error})") from None
    return out


def read_settings_file(path: Path, flag: str = "--config") -> dict:
    """A YAML mapping of settings; a missing, unreadable or non-mapping file is a
    `UserError` naming it."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot read it ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        raise UserError(f"{flag} {path}: not YAML ({error})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise UserError(f"{flag} {path}: expected a mapping of settings, got a {kind}")
    return data
