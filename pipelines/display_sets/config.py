"""Settings of the display-set builder (design.md §5, Chen et al. 2019 §6 "Dataset")."""

from __future__ import annotations

import codecs
import typing
from dataclasses import dataclass
from typing import Literal

from recrl.pipelines.prepare.config import TIMESTAMP_CHOICES, TimestampChoice
from recrl.pipelines.prepare.parsing import DEFAULT_YEARS, check_years

DisplaySource = Literal["movielens", "yoochoose", "generic", "impressions", "mind"]
DISPLAY_SOURCES: tuple[str, ...] = typing.get_args(DisplaySource)
DISPLAY_SOURCE_SUMMARIES: dict[str, str] = {
    "movielens": "u.data (+ u.item for genres/year); shown = the click + the items other "
    "users rated nearest in time",
    "yoochoose": "*clicks*.csv; shown = the click + the items other sessions clicked nearest "
    "in time",
    "generic": "session parquet/CSV (e.g. `recrl generate` output), as yoochoose",
    "impressions": "CSV with user_id,timestamp,shown,clicked[,history] (space-separated ids)",
    "mind": "MIND behaviors.tsv (+ news.tsv for topics)",
}
"""One line per source for ``recrl usermodel --help``: the files it reads, how sets are made."""
NEAR_TIME_SOURCES = ("movielens", "yoochoose", "generic")
"""Sources without logged impressions: shown sets are built from items near in time."""


@dataclass(frozen=True)
class DisplaySetConfig:
    """Build one record per page view: the user's previous clicks, the shown set, the click.

    Logs with impressions (``impressions``: the generic schema; ``mind``: MIND
    behaviors.tsv/news.tsv) keep the real shown set. Click logs (``movielens``,
    ``yoochoose``, ``generic`` sessions such as the generated dataset) get the paper's
    construction: the clicked item plus ``set_size - 1`` distinct items that *other* users
    clicked nearest in time. Users (sessions for session logs) are split train/val/test by
    ``split_fractions`` and ``seed``, as in the paper.
    """

    source: DisplaySource
    """Input format (the sources and what each reads are listed below)."""
    input_path: str
    """Input file or folder of the source."""
    output_path: str
    """Output folder: receives train/val/test parquet, items.parquet and meta.json."""
    set_size: int | None = None
    """K, items per shown set of the near-in-time construction; unset: 40 for MovieLens
    (1 + 39), 10 otherwise."""
    history_len: int = 10
    """m: previous clicks kept per record (the position-weight lags)."""
    split_fractions: tuple[float, float, float] = (0.5, 0.125, 0.375)
    """Train/val/test fractions of users (the paper's split)."""
    seed: int = 0
    """Seed of the user split and of the display order inside each set."""
    max_invalid_fraction: float = 0.01
    """Fail when more than this fraction of rows has a bad value of one kind (as in
    ``recrl prepare``)."""
    max_window: int = 4096
    """Largest ± window of events searched for near-in-time neighbours."""
    per_user: int | None = None
    """At most this many shown items from any one other user; unset: no cap."""
    timestamp_unit: TimestampChoice | None = None
    """Timestamp format of the whole input, as ``recrl prepare --timestamp-unit``; unset: the
    source's own (MovieLens ``s``, YooChoose ``iso``, MIND its fixed ``11/15/2019 10:22:32
    AM``; ``auto`` for generic and impressions: one format voted by a sample of every file)."""
    time_range: tuple[int, int] = DEFAULT_YEARS
    """First and last plausible year of an event; timestamps outside are invalid."""
    keep_duplicates: bool = False
    """Keep exact duplicate events of a click log instead of dropping all but one as
    ``duplicate_event`` (as ``recrl prepare``)."""
    encoding: str = "utf-8"
    """Text encoding of CSV/TSV inputs (a Python codec name)."""

    def __post_init__(self) -> None:
        if self.source not in DISPLAY_SOURCES:
            raise ValueError(f"source must be one of {', '.join(DISPLAY_SOURCES)}: {self.source!r}")
        if self.set_size is not None and self.set_size < 2:
            raise ValueError(f"set_size must be >= 2 (the click and one other), {self.set_size}")
        if self.history_len < 1:
            raise ValueError(f"history_len must be >= 1, got {self.history_len}")
        fractions = self.split_fractions
        if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"split_fractions must be 3 numbers >= 0 summing to 1: {fractions}")
        if not 0.0 <= self.max_invalid_fraction <= 1.0:
            raise ValueError("max_invalid_fraction must lie in [0, 1]")
        if self.timestamp_unit is not None and self.timestamp_unit not in TIMESTAMP_CHOICES:
            raise ValueError(f"timestamp_unit must be one of {TIMESTAMP_CHOICES}")
        if self.source == "mind" and self.timestamp_unit is not None:
            raise ValueError("MIND times have one fixed format: leave timestamp_unit unset")
        check_years(tuple(self.time_range))
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}; use e.g. latin-1") from None

    @property
    def shown_size(self) -> int:
        """K of the near-in-time construction."""
        if self.set_size is not None:
            return self.set_size
        return 40 if self.source == "movielens" else 10
