"""The per-block steps of `recrl prepare`, as pure functions on Arrow tables.

Ray Data runs them in `map_batches` (see `pipeline`), tests call them directly. Items are
first encoded against the vocabulary of all valid items ("provisional" ids), windows are
built in those ids, and a lookup table maps them to the final ``0..n_items-1`` once the
session filter has decided which items remain. Every step is vectorised over the block.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from recrl.models import batch as cols
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.windows import build_windows

SPLIT = "split"


def fixed_size_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """An int32 [N, L] matrix as an Arrow ``fixed_size_list<int32>[L]`` column."""
    matrix = np.ascontiguousarray(matrix, dtype=np.int32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def list_to_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Inverse of `fixed_size_list` (zero-copy where Arrow allows)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy().reshape(-1, width)


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


# --- statistics of the parsed events ------------------------------------------------


def _unique_counts(keys: np.ndarray, weights: np.ndarray | None = None):
    unique, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, weights=weights, minlength=len(unique))
    return unique, inverse, counts.astype(np.int64)


@dataclass
class SessionSummary:
    """Per-session totals over valid rows; blocks may hold parts of a session, so
    summaries are merged by id."""

    ids: np.ndarray
    clicks: np.ndarray
    events: np.ndarray
    start: np.ndarray
    """Earliest timestamp (ns) of the session."""

    @classmethod
    def of(cls, sessions: np.ndarray, is_buy: np.ndarray, timestamps: np.ndarray):
        ids, inverse, events = _unique_counts(sessions)
        clicks = np.bincount(inverse, weights=~is_buy, minlength=len(ids)).astype(np.int64)
        start = np.full(len(ids), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(start, inverse, timestamps)
        return cls(ids, clicks, events, start)

    def merge(self, other: SessionSummary) -> SessionSummary:
        ids, inverse = np.unique(np.concatenate([self.ids, other.ids]), return_inverse=True)
        n = len(ids)
        clicks = np.bincount(inverse, np.concatenate([self.clicks, other.clicks]), n)
        events = np.bincount(inverse, np.concatenate([self.events, other.events]), n)
        start = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(start, inverse, np.concatenate([self.start, other.start]))
        return SessionSummary(ids, clicks.astype(np.int64), events.astype(np.int64), start)


@dataclass
class ParsedStats:
    """Counts over parsed events; per-block results are combined with `merge`."""

    rows: int = 0
    drops: Counter = field(default_factory=Counter)
    """reason name -> rows."""
    examples: dict = field(default_factory=dict)
    """reason name -> (file index, line, raw text) of the first offending row."""
    item_ids: np.ndarray | None = None
    """Sorted unique item ids of valid rows..."""
    item_counts: np.ndarray | None = None
    """...and their number of valid rows."""
    sessions: SessionSummary | None = None
    """Sessions of valid rows whose item is not rare."""

    def merge(self, other: ParsedStats) -> ParsedStats:
        examples = dict(self.examples)
        for reason, example in other.examples.items():
            if reason not in examples or example[:2] < examples[reason][:2]:
                examples[reason] = example
        ids = np.concatenate([self.item_ids, other.item_ids])
        counts = np.concatenate([self.item_counts, other.item_counts])
        ids, _, counts = _unique_counts(ids, counts)
        return ParsedStats(
            self.rows + other.rows,
            self.drops + other.drops,
            examples,
            ids,
            counts,
            self.sessions.merge(other.sessions),
        )


def _valid_rows(table: pa.Table, rare_items: np.ndarray | None) -> np.ndarray:
    valid = _column(table, schema.DROP) == schema.KEPT
    if rare_items is not None and len(rare_items):
        items = table.column(schema.ITEM_ID).to_numpy(zero_copy_only=False)
        valid &= ~np.isin(items, rare_items)
    return valid


def parsed_stats(table: pa.Table, rare_items: np.ndarray | None = None) -> ParsedStats:
    """Drop counts, first example per reason, valid-item counts and session summaries of
    one parsed block. Rows with an item in ``rare_items`` do not count towards sessions."""
    drop = _column(table, schema.DROP)
    stats = ParsedStats(rows=table.num_rows)
    files = _column(table, schema.FILE)
    lines = _column(table, schema.LINE)
    codes, counts = np.unique(drop, return_counts=True)
    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
        if code == schema.KEPT:
            continue
        reason = schema.DROP_REASONS[code]
        stats.drops[reason] += count
        rows = np.flatnonzero(drop == code)
        first = rows[np.lexsort((lines[rows], files[rows]))[0]]
        raw = table.column(schema.BAD)[int(first)].as_py()
        stats.examples[reason] = (int(files[first]), int(lines[first]), raw)
    valid = drop == schema.KEPT
    items = table.column(schema.ITEM_ID).to_numpy(zero_copy_only=False)
    stats.item_ids, _, stats.item_counts = _unique_counts(items[valid])
    stats.sessions = valid_sessions(table, rare_items)
    return stats


def valid_sessions(table: pa.Table, rare_items: np.ndarray | None = None) -> SessionSummary:
    """Per-session totals of a block's valid rows whose item is not in ``rare_items``."""
    in_sessions = _valid_rows(table, rare_items)
    return SessionSummary.of(
        table.column(schema.SESSION_ID).to_numpy(zero_copy_only=False)[in_sessions],
        _bool_column(table, schema.IS_BUY)[in_sessions],
        _column(table, schema.TIMESTAMP)[in_sessions],
    )


VALID_COLUMNS = (schema.SESSION_ID, schema.TIMESTAMP, schema.ITEM_ID, schema.IS_BUY, schema.DROP)
"""What the stages after the counts read of a row: its place in the file (``_file``,
``_line``) and raw text (``_bad``) only serve the counts' examples."""


def dedup_and_count(table: pa.Table, *, keep: bool = False) -> tuple[pa.Table, ParsedStats]:
    """A session block after the shuffle: duplicates marked (`mark_duplicates`), counted
    (`parsed_stats`), then only its valid rows in `VALID_COLUMNS` kept, so the block that
    stays in the object store for the later stages is about a third smaller."""
    table = mark_duplicates(table, keep=keep)
    if table.num_rows == 0:  # a partition no session hashed to
        return table.select(list(VALID_COLUMNS)), ParsedStats()
    stats = parsed_stats(table)
    valid = pc.equal(table.column(schema.DROP), schema.KEPT)
    return table.filter(valid).select(list(VALID_COLUMNS)), stats


def _bool_column(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=bool)


# --- grouping by session and duplicates ----------------------------------------------

PARTITION_KEY = "_part"
"""Non-negative int64 hash of the raw session id, the key of the session shuffle."""


def with_session_key(table: pa.Table) -> pa.Table:
    """Add `PARTITION_KEY`: equal raw session ids (int or str) get equal keys."""
    sessions = table.column(schema.SESSION_ID)
    if pa.types.is_integer(sessions.type):
        hashed = sessions.to_numpy().astype(np.int64).view(np.uint64)
    else:
        hashed = _hash_strings(sessions.to_numpy(zero_copy_only=False).astype(object))
    key = (hashed >> np.uint64(1)).astype(np.int64)
    return table.append_column(PARTITION_KEY, pa.array(key))


def _hash_strings(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.util.hash_array(values, categorize=True)


def _codes(column) -> np.ndarray:
    """Integer codes with equal codes exactly for equal values (ids of either type)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_integer(column.type):
        return column.to_numpy()
    return column.dictionary_encode().indices.to_numpy().astype(np.int64)


def mark_duplicates(table: pa.Table, *, keep: bool = False) -> pa.Table:
    """Mark exact repeats of a valid event (same session, item, timestamp and event) as
    ``duplicate_event``, keeping the first by (file, line); the table must hold every row
    of its sessions (after the session shuffle). ``keep``: mark nothing.

    Returns the table without `PARTITION_KEY`."""
    if PARTITION_KEY in table.column_names:
        table = table.drop_columns([PARTITION_KEY])
    drop = _column(table, schema.DROP)
    valid = np.flatnonzero(drop == schema.KEPT)
    if keep or len(valid) < 2:
        return table
    rows = table.take(pa.array(valid))
    session = _codes(rows.column(schema.SESSION_ID))
    item = _codes(rows.column(schema.ITEM_ID))
    time = _column(rows, schema.TIMESTAMP)
    is_buy = _bool_column(rows, schema.IS_BUY)
    order = np.lexsort(
        (_column(rows, schema.LINE), _column(rows, schema.FILE), is_buy, time, item, session)
    )
    keys = (session[order], item[order], time[order], is_buy[order])
    repeat = np.ones(len(order) - 1, dtype=bool)
    for key in keys:
        repeat &= key[1:] == key[:-1]
    if not repeat.any():
        return table
    duplicate = valid[order[1:][repeat]]
    drop = drop.copy()
    drop[duplicate] = schema.REASON_CODE["duplicate_event"]
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[duplicate] = True
    text = pc.binary_join_element_wise(
        pc.cast(table.column(schema.SESSION_ID), pa.string()),
        pc.cast(table.column(schema.ITEM_ID), pa.string()),
        pc.cast(table.column(schema.TIMESTAMP), pa.string()),
        ",",
    )
    bad = pc.if_else(pa.array(mask), text, table.column(schema.BAD))
    table = table.set_column(
        table.schema.get_field_index(schema.DROP), schema.DROP, pa.array(drop, pa.uint8())
    )
    return table.set_column(table.schema.get_field_index(schema.BAD), schema.BAD, bad)


# --- kept rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class KeptSessions:
    """The driver's decisions, shipped to every block: which rows stay and where they go."""

    session_ids: np.ndarray
    """Sorted raw ids of kept sessions; a session's index here is its encoded id."""
    session_splits: np.ndarray
    """int8 split code (0 train, 1 val, 2 test) per kept session."""
    rare_items: np.ndarray | None
    """Sorted raw ids of items dropped by ``min_item_count`` (None: no item filter)."""


def _kept_rows(table: pa.Table, kept: KeptSessions) -> tuple[np.ndarray, np.ndarray]:
    """Mask of rows that become transitions, and their session index (valid where kept)."""
    valid = _valid_rows(table, kept.rare_items)
    sessions = table.column(schema.SESSION_ID).to_numpy(zero_copy_only=False)
    index = np.searchsorted(kept.session_ids, sessions)
    found = index < len(kept.session_ids)
    found[found] = kept.session_ids[index[found]] == sessions[found]
    return valid & found, np.minimum(index, max(len(kept.session_ids) - 1, 0))


def kept_item_counts(table: pa.Table, kept: KeptSessions) -> dict[int, tuple]:
    """Per split code: (sorted raw item ids, their counts, purchases) of the kept rows."""
    mask, index = _kept_rows(table, kept)
    split = kept.session_splits[index[mask]]
    items = table.column(schema.ITEM_ID).to_numpy(zero_copy_only=False)[mask]
    buys = _bool_column(table, schema.IS_BUY)[mask]
    out = {}
    for code in range(3):
        in_split = split == code
        ids, _, counts = _unique_counts(items[in_split])
        out[code] = (ids, counts, int(np.count_nonzero(buys[in_split])))
    return out


def merge_item_counts(a: dict, b: dict) -> dict:
    out = {}
    for code in a:
        ids = np.concatenate([a[code][0], b[code][0]])
        counts = np.concatenate([a[code][1], b[code][1]])
        ids, _, counts = _unique_counts(ids, counts)
        out[code] = (ids, counts, a[code][2] + b[code][2])
    return out


def tag_kept_events(table: pa.Table, *, kept: KeptSessions, items: np.ndarray) -> pa.Table:
    """Keep the rows that become transitions, with encoded session, item and split.

    ``items``: sorted raw ids of the final catalogue (index = encoded item id). Runs
    before the shuffle, so only these five narrow columns travel.
    """
    mask, index = _kept_rows(table, kept)
    raw_items = table.column(schema.ITEM_ID).to_numpy(zero_copy_only=False)[mask]
    session = index[mask].astype(np.int64)
    return pa.table(
        {
            cols.SESSION_ID: pa.array(session),
            schema.TIMESTAMP: pa.array(_column(table, schema.TIMESTAMP)[mask]),
            cols.ACTION: pa.array(np.searchsorted(items, raw_items).astype(np.int32)),
            cols.IS_BUY: pa.array(_bool_column(table, schema.IS_BUY)[mask]),
            SPLIT: pa.array(kept.session_splits[session]),
        }
    )


def session_transitions(
    table: pa.Table, *, state_len: int, pad_id: int, r_click: float, r_buy: float
) -> pa.Table:
    """Sort a block of whole sessions and build the transition of every event.

    The block must hold every event of each of its sessions (the pipeline partitions by
    session first). Ties in time put clicks before purchases, then order by item, so the
    result does not depend on the input order.
    """
    sessions = _column(table, cols.SESSION_ID)
    timestamps = _column(table, schema.TIMESTAMP)
    items = _column(table, cols.ACTION)
    is_buy = _bool_column(table, cols.IS_BUY)
    order = np.lexsort((items, is_buy, timestamps, sessions))
    sessions, items, is_buy = sessions[order], items[order], is_buy[order]
    split = _column(table, SPLIT)[order]
    windows = build_windows(sessions, items, state_len=state_len, pad_id=pad_id)
    return pa.table(
        {
            cols.SESSION_ID: pa.array(sessions),
            cols.STEP: pa.array(windows.step),
            cols.STATE: fixed_size_list(windows.state),
            cols.STATE_LEN: pa.array(windows.state_len),
            cols.ACTION: pa.array(items.astype(np.int32)),
            cols.REWARD: pa.array(np.where(is_buy, r_buy, r_click).astype(np.float32)),
            cols.IS_BUY: pa.array(is_buy),
            cols.NEXT_STATE: fixed_size_list(windows.next_state),
            cols.NEXT_STATE_LEN: pa.array(windows.next_state_len),
            cols.DONE: pa.array(windows.done),
            SPLIT: pa.array(split),
        }
    )


def select_split(table: pa.Table, *, code: int) -> pa.Table:
    """Rows of one split, without the split column."""
    if SPLIT not in table.column_names and table.num_rows == 0:
        return table  # an empty partition that Ray Data passed on without mapping it
    mask = _column(table, SPLIT) == code
    return table.filter(pa.array(mask)).drop_columns([SPLIT])
