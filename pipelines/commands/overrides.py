"""``--set KEY=VALUE`` arguments, shared by the subcommands that take them."""

from __future__ import annotations


def parse_overrides(pairs: list[str]) -> dict:
    """``["n_neg=20", "lr=1e-3"]`` -> ``{"n_neg": 20, "lr": 0.001}`` (values read as YAML)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out
