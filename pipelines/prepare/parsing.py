"""Vectorised parsing of adapter output into the canonical event table (see `schema`).

Every value that cannot be parsed marks its row with a drop reason instead of failing the
batch; the pipeline counts reasons and fails only above ``max_invalid_fraction``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.prepare import schema

TimestampUnit = Literal["iso", "s", "ms", "ns", "auto"]
IdType = Literal["int", "str"]

_INT_PATTERN = r"^\s*[+-]?\d+\s*$"
_NUMBER_PATTERN = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_SCALE_TO_NS = {"s": 1_000_000_000, "ms": 1_000_000, "ns": 1}
_INT64_LIMIT = 9.2e18


def _as_string(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    return column.fill_null("")


def parse_ids(column, id_type: IdType) -> tuple[pa.Array, np.ndarray]:
    """Parse an id column; returns (values, valid mask). Invalid ids become 0 or ""."""
    if id_type == "int" and pa.types.is_integer(column.type):
        valid = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
        return pc.cast(column.fill_null(0), pa.int64()), valid
    text = pc.utf8_trim_whitespace(_as_string(column))
    if id_type == "int":
        values, valid = _parse_int64(text)
        return pa.array(values, pa.int64()), valid
    valid = np.asarray(pc.greater(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False))
    return text, valid.astype(bool)


def parse_timestamps(column, unit: TimestampUnit) -> tuple[np.ndarray, np.ndarray]:
    """Parse timestamps to int64 ns since the epoch (UTC); returns (values, valid mask).

    ``iso``: ISO-8601 strings (``2014-04-07T10:51:09.277Z``; naive ones are taken as UTC);
    ``s``/``ms``/``ns``: numbers since the epoch; ``auto``: integers are ns, else ISO-8601.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type):
        ns = pc.cast(column, pa.timestamp("ns", tz=column.type.tz)).cast(pa.int64())
        return ns.fill_null(0).to_numpy(), np.asarray(
            pc.is_valid(column).to_numpy(zero_copy_only=False), bool
        )
    if pa.types.is_integer(column.type) and unit in ("s", "ms", "ns", "auto"):
        scale = _SCALE_TO_NS["ns" if unit == "auto" else unit]
        values = column.fill_null(0).to_numpy().astype(np.int64) * scale
        return values, np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), bool)
    text = pc.utf8_trim_whitespace(_as_string(column))
    out = np.zeros(len(text), dtype=np.int64)
    valid = np.zeros(len(text), dtype=bool)
    if unit == "auto":
        numeric = np.asarray(pc.match_substring_regex(text, _INT_PATTERN).to_numpy(False), bool)
        if numeric.any():
            out[numeric], valid[numeric] = _parse_numbers(text.filter(numeric), "ns")
        iso = ~numeric
        if iso.any():
            out[iso], valid[iso] = _parse_iso(text.filter(iso))
        return out, valid
    if unit == "iso":
        return _parse_iso(text)
    return _parse_numbers(text, unit)


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
    return values, np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)


def _parse_numbers(text: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray]:
    scale = _SCALE_TO_NS[unit]
    valid = np.asarray(pc.match_substring_regex(text, _NUMBER_PATTERN).to_numpy(False), bool)
    scaled = pc.cast(pc.if_else(valid, text, "0"), pa.float64()).to_numpy() * scale
    # Integers are scaled exactly: float64 would round e.g. 1433221332117 ms by 64 ns.
    ints, is_int = _parse_int64(text)
    is_int &= np.abs(ints) <= np.iinfo(np.int64).max // scale
    valid &= is_int | (np.abs(scaled) < _INT64_LIMIT)
    floats = np.round(np.where(valid & ~is_int, scaled, 0.0)).astype(np.int64)
    return np.where(is_int, np.where(is_int, ints, 0) * scale, floats), valid


def _parse_iso(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    try:  # fast path: Arrow parses well-formed ISO-8601 with a zone (Z or +hh:mm)
        parsed = pc.cast(text, pa.timestamp("ns", tz="UTC"))
        return parsed.cast(pa.int64()).to_numpy(), np.ones(len(text), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # naive or invalid values somewhere in the block: parse value by value
    strings = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(strings, errors="coerce", utc=True, format="ISO8601")
    valid = parsed.notna().to_numpy()
    values = parsed.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64(0, "ns"))
    return values.astype(np.int64), valid


def parse_events(
    table: pa.Table,
    *,
    timestamp_unit: TimestampUnit,
    session_id_type: IdType,
    item_id_type: IdType,
) -> pa.Table:
    """Adapter output (session_id, timestamp, item_id, event + bookkeeping) → canonical table.

    The first failing check decides a row's drop reason, in the order of
    `schema.DROP_REASONS`; ``_bad`` keeps the raw text that failed.
    """
    drop = np.asarray(table.column(schema.DROP).to_numpy(), dtype=np.uint8).copy()
    bad = table.column(schema.BAD).combine_chunks()

    sessions, session_ok = parse_ids(table.column(schema.SESSION_ID), session_id_type)
    timestamps, time_ok = parse_timestamps(table.column(schema.TIMESTAMP), timestamp_unit)
    items, item_ok = parse_ids(table.column(schema.ITEM_ID), item_id_type)
    event = pc.utf8_lower(pc.utf8_trim_whitespace(_as_string(table.column(schema.EVENT))))
    is_click = np.asarray(pc.equal(event, schema.CLICK).to_numpy(False), bool)
    is_buy = np.asarray(pc.equal(event, schema.PURCHASE).to_numpy(False), bool)
    excluded = np.asarray(pc.equal(event, schema.EXCLUDED).to_numpy(False), bool)

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
