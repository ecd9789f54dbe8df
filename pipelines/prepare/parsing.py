"""Vectorised parsing of adapter output into the canonical event table (see `schema`).

Every value that cannot be parsed marks its row with a drop reason instead of failing the
batch; the pipeline counts reasons and fails only above ``max_invalid_fraction``.

Timestamps have ONE format per column for the whole input (`detect_timestamp_format`):
ISO-8601 (with or without a zone; naive values are UTC) or integer epoch seconds,
milliseconds, microseconds or nanoseconds. A value that does not fit the column's format,
or lies outside the plausible range of years (1990-2100 by default), is invalid; it is
never re-interpreted in another unit or wrapped around int64.
"""

from __future__ import annotations

import calendar
from collections import Counter
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from recrl.pipelines.prepare import schema

TimestampUnit = Literal["iso", "s", "ms", "us", "ns", "auto"]
"""A column's timestamp format; ``auto`` detects it from the values given (one decision)."""
TIMESTAMP_FORMATS: tuple[str, ...] = ("iso", "s", "ms", "us", "ns")
"""Concrete formats, in the order that breaks a tie of `detect_timestamp_format`."""
IdType = Literal["int", "str"]

DEFAULT_YEARS = (1990, 2100)
"""Plausible years of an event (inclusive); timestamps outside are invalid."""
YEAR_LIMITS = (1678, 2261)
"""Years whose every instant fits int64 nanoseconds; `--time-range` must stay inside."""
NULL_IDS = ("", "nan", "null", "none", "<na>")
"""Id values (compared case-insensitively, after trimming) that mean "missing": invalid."""

_INT_PATTERN = r"^\s*[+-]?\d+\s*$"
_NUMBER_PATTERN = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_ISO_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}([.,]\d{1,9})?)?)?"
    r"\s*(Z|[+-]\d{2}(:?\d{2})?)?$"
)
_SCALE_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_INT64_LIMIT = 9.2e18


def year_range_ns(years: tuple[int, int] = DEFAULT_YEARS) -> tuple[int, int]:
    """[first instant of ``years[0]``, last ns of ``years[1]``] in ns since the epoch."""
    first, last = years
    start = calendar.timegm((first, 1, 1, 0, 0, 0, 0, 0, 0)) * 10**9
    end = calendar.timegm((last + 1, 1, 1, 0, 0, 0, 0, 0, 0)) * 10**9 - 1
    return start, end


def epoch_units_overlap(years: tuple[int, int]) -> bool:
    """Whether a number can fit two epoch units inside ``years``: the magnitude tells
    seconds from milliseconds only when the range lies well after 1970 (end < 1000 x
    start). A range reaching back to 1970 makes every small number fit every unit."""
    start, end = year_range_ns(years)
    return start <= 0 or end >= 1000 * start


def check_years(years: tuple[int, int]) -> None:
    """Raise ValueError unless ``years`` is an ordered pair inside `YEAR_LIMITS`."""
    low, high = YEAR_LIMITS
    if len(years) != 2 or not low <= years[0] <= years[1] <= high:
        raise ValueError(
            f"time range must be two years FIRST LAST with {low} <= FIRST <= LAST <= {high} "
            f"(int64 nanoseconds cover no more); got {' '.join(map(str, years))}"
        )


def _as_string(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    return column.fill_null("")


def _mask(array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def parse_ids(column, id_type: IdType) -> tuple[pa.Array, np.ndarray]:
    """Parse an id column; returns (values, valid mask). Invalid ids become 0 or "".

    Missing values (null, empty, `NULL_IDS` in any case) are invalid. Negative integers
    are valid ids as written, for every adapter (``int`` ids compare as numbers, so
    ``+5`` and ``05`` are ``5``; ``str`` ids compare as the trimmed text).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if id_type == "int" and pa.types.is_integer(column.type):
        valid = _mask(pc.is_valid(column))
        return pc.cast(column.fill_null(0), pa.int64()), valid
    text = pc.utf8_trim_whitespace(_as_string(column))
    if id_type == "int":
        values, valid = _parse_int64(text)
        return pa.array(values, pa.int64()), valid
    missing = _mask(pc.is_in(pc.utf8_lower(text), value_set=pa.array(NULL_IDS)))
    valid = ~missing
    return pc.if_else(pa.array(valid), text, ""), valid


# --- timestamps -------------------------------------------------------------------------


def timestamp_votes(column, years: tuple[int, int] = DEFAULT_YEARS) -> Counter:
    """How many values of ``column`` fit each concrete format inside ``years``.

    Epoch units are told apart by magnitude: inside a range that starts well after 1970
    (see `epoch_units_overlap`, which the config checks) the ranges of seconds (~1e9),
    milliseconds (~1e12), microseconds (~1e15) and nanoseconds (~1e18) never overlap, so a
    number votes for at most one unit. Typed timestamp columns carry their unit and do not
    vote.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    votes: Counter = Counter()
    if pa.types.is_timestamp(column.type) or len(column) == 0:
        return votes
    start, end = year_range_ns(years)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        numbers = pc.cast(column, pa.float64(), safe=False).fill_null(np.nan).to_numpy(False)
        numeric = ~np.isnan(numbers)
    else:
        text = pc.utf8_trim_whitespace(_as_string(column))
        numeric = _mask(pc.match_substring_regex(text, _NUMBER_PATTERN))
        numbers = pc.cast(pc.if_else(pa.array(numeric), text, "nan"), pa.float64()).to_numpy()
        _, iso_ok = _parse_iso(text, years)
        votes["iso"] = int(np.count_nonzero(iso_ok & ~numeric))
    for unit, scale in _SCALE_TO_NS.items():
        scaled = numbers[numeric] * scale
        votes[unit] = int(np.count_nonzero((scaled >= start) & (scaled <= end)))
    return +votes


def detect_timestamp_format(votes: Counter) -> str:
    """The format most values fit (ties: the first of `TIMESTAMP_FORMATS`); ``iso`` when
    no value fits any format (every value is then invalid)."""
    if not votes:
        return "iso"
    return max(TIMESTAMP_FORMATS, key=lambda f: (votes.get(f, 0), -TIMESTAMP_FORMATS.index(f)))


def parse_timestamps(
    column, unit: TimestampUnit, years: tuple[int, int] = DEFAULT_YEARS
) -> tuple[np.ndarray, np.ndarray]:
    """Parse timestamps to int64 ns since the epoch (UTC); returns (values, valid mask).

    ``iso``: ISO-8601 strings (``2014-04-07T10:51:09.277Z``; naive ones are taken as UTC);
    ``s``/``ms``/``us``/``ns``: numbers since the epoch; ``auto``: the one format most
    values of ``column`` fit (`detect_timestamp_format`). Values that do not fit the
    format or fall outside ``years`` are invalid (0).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if unit == "auto":
        unit = detect_timestamp_format(timestamp_votes(column, years))
    if unit not in TIMESTAMP_FORMATS:
        raise ValueError(f"unknown timestamp format {unit!r}; expected one of {TIMESTAMP_FORMATS}")
    if pa.types.is_timestamp(column.type):
        values, valid = _typed_timestamps(column)
    elif pa.types.is_integer(column.type):
        valid = _mask(pc.is_valid(column))
        if unit == "iso":  # numbers are not ISO-8601
            valid[:] = False
        scale = _SCALE_TO_NS.get(unit, 1)
        raw = column.fill_null(0).to_numpy().astype(np.int64)
        valid &= np.abs(raw) <= np.iinfo(np.int64).max // scale
        values = np.where(valid, raw, 0) * scale
    else:
        text = pc.utf8_trim_whitespace(_as_string(column))
        if unit == "iso":
            values, valid = _parse_iso(text, years)
        else:
            values, valid = _parse_numbers(text, unit)
    start, end = year_range_ns(years)
    valid &= (values >= start) & (values <= end)
    return np.where(valid, values, 0).astype(np.int64), valid


def _typed_timestamps(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A timestamp-typed column in ns; values beyond int64 ns are invalid, not wrapped."""
    scale = _SCALE_TO_NS[column.type.unit]
    raw = pc.cast(column, pa.int64()).fill_null(0).to_numpy().astype(np.int64)
    valid = _mask(pc.is_valid(column)) & (np.abs(raw) <= np.iinfo(np.int64).max // scale)
    return np.where(valid, raw, 0) * scale, valid


def _parse_int64(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 of integer strings (optional sign); returns (values, valid mask).

    Non-integers and integers of magnitude >= 9.2e18 (about int64's limit) are invalid and
    become 0, so one bad value never fails the whole batch.
    """
    valid = pc.match_substring_regex(text, _INT_PATTERN)
    digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), r"^\+", "")
    digits = pc.if_else(valid, digits, "0")
    valid = pc.and_(valid, pc.less(pc.abs(pc.cast(digits, pa.float64())), _INT64_LIMIT))
    values = pc.cast(pc.if_else(valid, digits, "0"), pa.int64()).to_numpy()
    return values, _mask(valid)


def _parse_numbers(text: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray]:
    scale = _SCALE_TO_NS[unit]
    valid = _mask(pc.match_substring_regex(text, _NUMBER_PATTERN))
    scaled = pc.cast(pc.if_else(pa.array(valid), text, "0"), pa.float64()).to_numpy() * scale
    # Integers are scaled exactly: float64 would round e.g. 1433221332117 ms by 64 ns.
    ints, is_int = _parse_int64(text)
    is_int &= np.abs(ints) <= np.iinfo(np.int64).max // scale
    valid &= is_int | (np.abs(scaled) < _INT64_LIMIT)
    floats = np.round(np.where(valid & ~is_int, scaled, 0.0)).astype(np.int64)
    return np.where(is_int, np.where(is_int, ints, 0) * scale, floats), valid


def _parse_iso(text: pa.Array, years: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """ISO-8601 strings (``YYYY-MM-DD[(T| )hh:mm[:ss[.f]]][Z|±hh[:mm]]``) to ns.

    Only that shape is accepted (no ``2014/04/06``, no bare numbers), and the year must lie
    within a year of ``years`` before conversion, so no value can wrap around int64; the
    exact range check follows in `parse_timestamps`.
    """
    shape_ok = _mask(pc.match_substring_regex(text, _ISO_PATTERN))
    year = pc.cast(
        pc.if_else(pa.array(shape_ok), pc.utf8_slice_codeunits(text, 0, 4), "0"), pa.int64()
    )
    year = year.to_numpy()
    ok = shape_ok & (year >= years[0] - 1) & (year <= years[1] + 1)
    out = np.zeros(len(text), dtype=np.int64)
    if not ok.any():
        return out, ok
    candidates = text.filter(pa.array(ok))
    try:  # fast path: Arrow parses well-formed ISO-8601 with a zone (Z or +hh:mm)
        parsed = pc.cast(candidates, pa.timestamp("ns", tz="UTC"))
        out[ok] = parsed.cast(pa.int64()).to_numpy()
        return out, ok
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # naive or invalid values somewhere in the block: parse value by value
    strings = pd.Series(candidates.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(strings, errors="coerce", utc=True, format="ISO8601")
    good = parsed.notna().to_numpy()
    values = parsed.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64(0, "ns"))
    out[ok] = np.where(good, values.astype(np.int64), 0)
    valid = ok.copy()
    valid[ok] = good
    return out, valid


# --- whole events ---------------------------------------------------------------------


def parse_events(
    table: pa.Table,
    *,
    timestamp_unit: TimestampUnit,
    session_id_type: IdType,
    item_id_type: IdType,
    years: tuple[int, int] = DEFAULT_YEARS,
) -> pa.Table:
    """Adapter output (session_id, timestamp, item_id, event + bookkeeping) → canonical table.

    ``timestamp_unit`` is the column's format for the whole input, decided beforehand
    (`detect_timestamp_format`); ``auto`` decides from this table alone. The first failing
    check decides a row's drop reason, in the order of `schema.DROP_REASONS`; ``_bad``
    keeps the raw text that failed.
    """
    drop = np.asarray(table.column(schema.DROP).to_numpy(), dtype=np.uint8).copy()
    bad = table.column(schema.BAD).combine_chunks()

    sessions, session_ok = parse_ids(table.column(schema.SESSION_ID), session_id_type)
    timestamps, time_ok = parse_timestamps(table.column(schema.TIMESTAMP), timestamp_unit, years)
    items, item_ok = parse_ids(table.column(schema.ITEM_ID), item_id_type)
    event = pc.utf8_lower(pc.utf8_trim_whitespace(_as_string(table.column(schema.EVENT))))
    is_click = _mask(pc.equal(event, schema.CLICK))
    is_buy = _mask(pc.equal(event, schema.PURCHASE))
    excluded = _mask(pc.equal(event, schema.EXCLUDED))

    checks = (
        ("invalid_session_id", session_ok, schema.SESSION_ID),
        ("invalid_timestamp", time_ok, schema.TIMESTAMP),
        ("invalid_item_id", item_ok, schema.ITEM_ID),
        ("invalid_event", is_click | is_buy | excluded, schema.EVENT),
        ("excluded_event", ~excluded, schema.EVENT),
    )
    for reason, ok, column in checks:
        newly_bad = (drop == schema.KEPT) & ~ok
        if newly_bad.any():
            drop[newly_bad] = schema.REASON_CODE[reason]
            raw = _as_string(table.column(column))
            bad = pc.if_else(pa.array(newly_bad), raw, bad)

    return pa.table(
        {
            schema.SESSION_ID: sessions,
            schema.TIMESTAMP: pa.array(timestamps, pa.int64()),
            schema.ITEM_ID: items,
            schema.IS_BUY: pa.array(is_buy),
            schema.DROP: pa.array(drop, pa.uint8()),
            schema.FILE: table.column(schema.FILE).combine_chunks(),
            schema.LINE: table.column(schema.LINE).combine_chunks(),
            schema.BAD: bad,
        }
    )
