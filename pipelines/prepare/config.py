"""Settings of `recrl prepare` (docs/design.md §1): one typed dataclass and its defaults."""

from __future__ import annotations

import codecs
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

from recrl.pipelines.errors import SettingError
from recrl.pipelines.prepare.adapters import ADAPTERS
from recrl.pipelines.prepare.parsing import check_years, epoch_units_overlap

SOURCES: tuple[str, ...] = tuple(ADAPTERS)
"""The input formats: the names of the adapter registry
(`recrl.pipelines.prepare.adapters.ADAPTERS`), which is the one list of them."""
TimestampChoice = Literal["auto", "iso", "s", "ms", "us", "ns"]
TIMESTAMP_CHOICES: tuple[str, ...] = typing.get_args(TimestampChoice)


@dataclass(frozen=True)
class PrepareConfig:
    """Turn a session log into RL transitions (Xin et al. 2020, RC15 recipe; design.md §1).

    Rows are parsed and validated, sessions with too few clicks removed, items
    label-encoded to ``0..n_items-1`` (``pad_id = n_items``), sessions split train/val/test
    by ``split_fractions`` and every event of a session becomes a transition with a state
    of the previous ``state_len`` items.
    """

    # A plain str checked in __post_init__, not a Literal: the names live in the registry
    # alone, so a new source needs no edit here.
    source: str
    """Input format (the sources and the files each looks for are listed below)."""
    input_path: str
    """Input file or folder of the source (local path, s3:// or gs://)."""
    output_path: str
    """Output folder: receives train/, val/, test/ parquet shards and meta.json."""
    state_len: int = 10
    """L: number of previous items in a state (items per state)."""
    r_click: float = 0.2
    """Reward of a click event."""
    r_buy: float = 1.0
    """Reward of a purchase event."""
    min_session_clicks: int = 2
    """Keep sessions with MORE than this many clicks (RC15: sessions of length >= 3)."""
    min_item_count: int = 0
    """Drop items with <= this many valid events before the session filter; 0 keeps all."""
    split: Literal["session", "time"] = "session"
    """How sessions are split: ``session``, a random permutation of session ids from
    ``seed``; ``time``, by session start time."""
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train/val/test fractions of sessions."""
    seed: int = 0
    """Seed of the session split (the permutation of ``split = session``)."""
    max_invalid_fraction: float = 0.01
    """Fail when more than this fraction of all input rows has a bad value (any kind:
    malformed row, invalid session id, timestamp, item id or event)."""
    timestamp_unit: TimestampChoice | None = None
    """Timestamp format of the whole input: ``iso`` (ISO-8601, with or without zone), epoch
    ``s``/``ms``/``us``/``ns``, or ``auto`` (detected from the first rows of every file);
    unset: the source's own (``auto`` for generic). Values that do not fit are
    ``invalid_timestamp``, never re-read in another unit."""
    time_range: tuple[int, int] = (1990, 2100)
    """First and last plausible year of an event; timestamps outside are invalid."""
    keep_duplicates: bool = False
    """Keep exact duplicate events (session, item, timestamp, event) instead of dropping
    all but one as ``duplicate_event``."""
    encoding: str = "utf-8"
    """Text encoding of CSV inputs (any Python codec name, e.g. ``latin-1``)."""
    retailrocket_purchase: Literal["addtocart", "transaction"] = "addtocart"
    """RetailRocket event that counts as purchase; ``addtocart`` is the SQN/SA2C convention
    (``transaction`` rows are then dropped); with ``transaction``, add-to-cart rows are."""
    movielens_positive_threshold: float | None = None
    """MovieLens ratings >= this become purchases; unset: every rating is a click."""
    rows_per_shard: int = 1_000_000
    """Most transitions per parquet file."""
    num_partitions: int | None = None
    """Hash partitions by session for the window stage; unset: picked from the input size."""
    overwrite: bool = False
    """Replace an output folder that holds a different dataset."""
    extra_metadata: dict[str, str] = field(default_factory=dict)
    """Free-form provenance copied into meta.json (e.g. the generator settings)."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}; got {self.source!r}")
        if self.state_len < 1:
            raise ValueError(f"state_len must be >= 1, got {self.state_len}")
        if self.min_session_clicks < 0 or self.min_item_count < 0:
            raise ValueError("min_session_clicks and min_item_count must be >= 0")
        if self.split not in ("session", "time"):
            raise ValueError(f"split must be 'session' or 'time', got {self.split!r}")
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(
                f"split_fractions must be three non-negative numbers summing to 1, got {fractions}"
            )
        if not 0.0 <= self.max_invalid_fraction <= 1.0:
            raise ValueError("max_invalid_fraction must lie in [0, 1]")
        if self.retailrocket_purchase not in ("addtocart", "transaction"):
            raise ValueError("retailrocket_purchase must be 'addtocart' or 'transaction'")
        if self.rows_per_shard < 1:
            raise ValueError("rows_per_shard must be >= 1")
        self._check_input_settings()

    def _check_input_settings(self) -> None:
        """Settings of how input values are read; `SettingError`s, checked before Ray."""
        if self.timestamp_unit is not None and self.timestamp_unit not in TIMESTAMP_CHOICES:
            raise SettingError(
                f"--timestamp-unit must be one of {', '.join(TIMESTAMP_CHOICES)}; "
                f"got {self.timestamp_unit!r}"
            )
        try:
            check_years(tuple(self.time_range))
        except ValueError as error:
            raise SettingError(f"--time-range: {error}") from None
        # Only a source that detects its timestamp format (generic) has to tell epoch units
        # apart by size; the others have a fixed one.
        if (
            ADAPTERS[self.source].timestamp_unit == "auto"
            and self.timestamp_unit in (None, "auto")
            and epoch_units_overlap(tuple(self.time_range))
        ):
            first, last = self.time_range
            raise SettingError(
                f"--time-range {first} {last} reaches back to 1970, where epoch seconds, "
                "milliseconds, microseconds and nanoseconds cannot be told apart by their "
                "size; give --timestamp-unit (iso, s, ms, us or ns)"
            )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise SettingError(
                f"--encoding: unknown encoding {self.encoding!r}; use a Python codec name "
                "such as utf-8 or latin-1"
            ) from None

    def fingerprint_fields(self) -> dict:
        """Settings that change the produced transitions (used to detect a different dataset
        in an existing output folder)."""
        skip = {"output_path", "overwrite", "num_partitions", "rows_per_shard"}
        # Input-reading settings count only when set away from their default, so outputs
        # written before they existed keep their fingerprint.
        for name in ("timestamp_unit", "time_range", "keep_duplicates", "encoding"):
            if getattr(self, name) == _DEFAULTS[name]:
                skip.add(name)
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PrepareConfig)}
