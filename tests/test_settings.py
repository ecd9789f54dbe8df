"""The one settings system: flat ``KEY=VALUE`` settings applied to nested configs, and
command-line flags generated from config fields."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest
from recrl.pipelines.commands.flags import (
    add_field_flags,
    add_settings_options,
    collect_settings,
)
from recrl.pipelines.errors import SettingError
from recrl.pipelines.settings import apply_settings, field_docs, setting_paths


@dataclass(frozen=True)
class Inner:
    width: int = 8
    """Units of the layer."""
    rate: float = 0.1
    """Dropout rate."""


@dataclass(frozen=True)
class Other:
    rate: float = 0.5
    """Another rate: the same name as `Inner.rate` at the same depth."""


@dataclass(frozen=True)
class Outer:
    name: str
    """What the run is called."""
    steps: int = 100
    """Number of updates."""
    mode: Literal["fast", "exact"] = "fast"
    """How to compute."""
    sizes: tuple[int, ...] = (1, 2)
    """Sizes, several."""
    inner: Inner = field(default_factory=Inner)
    """The nested config."""
    other: Other = field(default_factory=Other)
    """A second nested config."""
    extra: dict = field(default_factory=dict)
    """Settings nobody else knows."""

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be > 0, got {self.steps}")


def test_paths_reach_nested_fields_flat_unless_ambiguous():
    paths = setting_paths(Outer)
    assert paths["steps"] == ("steps",)
    assert paths["width"] == ("inner", "width")
    assert paths["inner.width"] == ("inner", "width")
    assert "rate" not in paths  # inner.rate and other.rate: dotted only
    assert paths["other.rate"] == ("other", "rate")


def test_settings_are_routed_converted_and_checked():
    config = Outer(name="a")
    changed = apply_settings(config, {"width": 16, "inner.rate": 0.3, "steps": 7,
                                      "sizes": [3, 4], "other.rate": 1})  # fmt: skip
    assert changed == Outer(name="a", steps=7, sizes=(3, 4), inner=Inner(16, 0.3), other=Other(1.0))
    assert isinstance(changed.other.rate, float)
    assert config == Outer(name="a")  # frozen: the original is untouched
    with pytest.raises(SettingError, match=r"unknown setting 'widht' \(did you mean 'width'\?\)"):
        apply_settings(config, {"widht": 3})
    with pytest.raises(SettingError, match=r"known: .*inner\.rate.*other\.rate.*steps.*width"):
        apply_settings(config, {"rate": 3})
    with pytest.raises(SettingError, match=r"setting width: expected int, got 'x' \(str\)"):
        apply_settings(config, {"width": "x"})
    with pytest.raises(SettingError, match=r"setting mode: expected one of 'fast', 'exact'"):
        apply_settings(config, {"mode": "slow"})
    with pytest.raises(SettingError, match=r"steps must be > 0, got 0"):
        apply_settings(config, {"steps": 0})
    rest = apply_settings(config, {"beta": 2, "steps": 5}, rest_to="extra")
    assert rest.extra == {"beta": 2} and rest.steps == 5
    both = apply_settings(config, {"extra": {"l2": 1}, "beta": 2}, rest_to="extra")
    assert both.extra == {"l2": 1, "beta": 2}


def test_field_docs_are_the_attribute_docstrings():
    assert field_docs(Outer)["steps"] == "Number of updates."
    assert (
        field_docs(Other)["rate"]
        == "Another rate: the same name as `Inner.rate` at the same depth."
    )


def test_flags_come_from_fields_and_only_given_ones_become_settings(tmp_path):
    parser = argparse.ArgumentParser()
    add_settings_options(parser, "Outer fields")
    add_field_flags(parser, Outer, {"steps": "steps", "mode": "mode", "sizes": "sizes"})
    help_text = parser.format_help()
    assert "Number of updates. (default: 100)" in help_text
    assert "{fast,exact}" in help_text and "How to compute. (default: fast)" in help_text
    assert collect_settings(parser.parse_args([])) == {}

    file = tmp_path / "settings.yaml"
    file.write_text("steps: 5\nwidth: 3\nmode: exact\n")
    args = parser.parse_args(["--config", str(file), "--set", "steps=6", "--set", "width=4",
                              "--steps", "7", "--sizes", "1", "2", "3"])  # fmt: skip
    # file, then --set, then flags
    assert collect_settings(args) == {"steps": 7, "width": 4, "mode": "exact", "sizes": [1, 2, 3]}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "slow"])
