"""Logs that record what was shown: the generic impressions schema and MIND.

Generic impressions (CSV with a header; ``.tsv`` files are tab-separated): ``user_id``,
``timestamp`` (ISO-8601 or epoch s/ms/us/ns, one format for all files as in `recrl
prepare`), ``shown`` (space-separated item ids in display order), ``clicked``
(space-separated ids of the clicked ones, may be empty) and, optionally, ``history``
(space-separated clicks made before the log starts).

MIND ``behaviors.tsv`` (no header): ``impression_id, user_id, time (11/15/2019 10:22:32
AM), history, impressions`` with impressions like ``N123-1 N456-0`` (``-1`` = clicked).

Both are parsed into one table per file with vectorised Arrow calls (`ParsedImpressions`);
a row with a bad value is dropped and counted by reason, never silently. Records are then
made by `impression_records`: an impression with c clicks gives c page views (in display
order, each one's history holding the clicks before it); one without clicks gives a single
no-click page view.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from recrl.models.user_model.data import NO_CLICK
from recrl.pipelines.display_sets.records import Records, previous_clicks
from recrl.pipelines.prepare.adapters import SAMPLE_ROWS
from recrl.pipelines.prepare.errors import MissingInputError
from recrl.pipelines.prepare.parsing import (
    DEFAULT_YEARS,
    detect_timestamp_format,
    parse_ids,
    parse_timestamps,
    timestamp_votes,
    year_range_ns,
)
from recrl.pipelines.prepare.reading import (
    CsvLayout,
    SourceFile,
    check_layout,
    list_files,
    read_first_line,
    read_local,
)

IMPRESSION_DROP_REASONS = (
    "malformed_row",
    "invalid_user_id",
    "invalid_timestamp",
    "invalid_impression",
)
"""Why an impression row was dropped; all are bad values (bounded by max_invalid_fraction)."""
REASON_COLUMN = {
    "impressions": {
        "malformed_row": None,
        "invalid_user_id": "user_id",
        "invalid_timestamp": "timestamp",
        "invalid_impression": "shown",
    },
    "mind": {
        "malformed_row": None,
        "invalid_user_id": "user_id",
        "invalid_timestamp": "time",
        "invalid_impression": "impressions",
    },
}
"""Per source, the column whose value caused each drop reason (None: the whole row)."""

GENERIC_COLUMNS = ("user_id", "timestamp", "shown", "clicked")
MIND_BEHAVIORS = CsvLayout(
    columns=("impression_id", "user_id", "time", "history", "impressions"),
    required=("impression_id", "user_id", "time", "history", "impressions"),
    delimiter="\t",
    header=False,
)
_MIND_TOKEN = r"^\S+-[01]$"
_MIND_TIME = "%m/%d/%Y %I:%M:%S %p"


@dataclass(frozen=True)
class ParsedImpressions:
    """Impression rows of one file; token arrays are flat with the row of each token."""

    user: np.ndarray
    """object [R]: raw user id."""
    timestamp: np.ndarray
    """int64 [R], ns."""
    line: np.ndarray
    """int64 [R]: 1-based line in the file."""
    drop: np.ndarray
    """object [R]: drop reason, or None for a kept row."""
    bad: np.ndarray
    """object [R]: offending raw text of a dropped row."""
    shown_item: np.ndarray
    """object [T]: shown item ids, row after row, in display order."""
    shown_row: np.ndarray
    """int64 [T]: row of each shown token."""
    shown_clicked: np.ndarray
    """bool [T]: the shown item was clicked."""
    history_item: np.ndarray
    """object [H]: prior-history item ids, in order."""
    history_row: np.ndarray
    """int64 [H]"""


def _tokens(column) -> tuple[np.ndarray, np.ndarray]:
    """Space-separated lists → (tokens object [T], row int64 [T]); empty tokens removed."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lists = pc.split_pattern_regex(pc.utf8_trim_whitespace(column.fill_null("")), r"\s+")
    tokens = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(lists).to_numpy().astype(np.int64)
    keep = tokens != ""
    return tokens[keep], rows[keep]


def _mark(drop: np.ndarray, bad: np.ndarray, rows_bad: np.ndarray, reason: str, raw) -> None:
    newly = rows_bad & pd.isna(drop)
    drop[newly] = reason
    bad[newly] = np.asarray(raw, dtype=object)[newly]


def _parse(
    table: pa.Table,
    user_col: str,
    time_values: tuple[np.ndarray, np.ndarray],
    shown: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    history_col: str | None,
    raw_shown,
) -> ParsedImpressions:
    """Common tail: user and timestamp checks, then the token arrays of kept rows."""
    n = table.num_rows
    drop = np.full(n, None, dtype=object)
    bad = np.full(n, None, dtype=object)
    malformed = table.column("_drop").to_numpy() != 0
    drop[malformed] = "malformed_row"
    bad[malformed] = table.column("_bad").to_numpy(zero_copy_only=False)[malformed]
    users, user_ok = parse_ids(table.column(user_col), "str")
    raw_user = table.column(user_col).to_numpy(zero_copy_only=False)
    _mark(drop, bad, ~user_ok, "invalid_user_id", raw_user)
    times, time_ok = time_values
    raw_time = table.column("time" if "time" in table.column_names else "timestamp")
    _mark(drop, bad, ~time_ok, "invalid_timestamp", raw_time.to_numpy(zero_copy_only=False))
    item, row, clicked, row_bad = shown
    _mark(drop, bad, row_bad, "invalid_impression", raw_shown)
    kept = pd.isna(drop)
    token_kept = kept[row]
    if history_col is not None:
        h_item, h_row = _tokens(table.column(history_col))
    else:
        h_item, h_row = np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return ParsedImpressions(
        user=users.to_numpy(zero_copy_only=False),
        timestamp=times,
        line=table.column("_line").to_numpy().astype(np.int64),
        drop=drop,
        bad=bad,
        shown_item=item[token_kept],
        shown_row=row[token_kept],
        shown_clicked=clicked[token_kept],
        history_item=h_item[kept[h_row]],
        history_row=h_row[kept[h_row]],
    )


def parse_generic(
    table: pa.Table, time_format: str, years: tuple[int, int] = DEFAULT_YEARS
) -> ParsedImpressions:
    """Parse a generic impressions table (string columns + prepare's bookkeeping);
    ``time_format`` is the timestamp column's one format for every file (`time_format`)."""
    n = table.num_rows
    item, row = _tokens(table.column("shown"))
    c_item, c_row = _tokens(table.column("clicked"))
    keys = np.char.add(np.char.add(row.astype(str), "\x1f"), item.astype(str))
    click_keys = np.char.add(np.char.add(c_row.astype(str), "\x1f"), c_item.astype(str))
    clicked = np.isin(keys, click_keys)
    row_bad = np.bincount(row, minlength=n) == 0  # nothing shown
    row_bad[c_row[~np.isin(click_keys, keys)]] = True  # a click on an item not shown
    times = parse_timestamps(table.column("timestamp"), time_format, years)
    history = "history" if "history" in table.column_names else None
    raw_shown = table.column("shown").to_numpy(zero_copy_only=False)
    return _parse(table, "user_id", times, (item, row, clicked, row_bad), history, raw_shown)


def parse_mind(table: pa.Table, years: tuple[int, int] = DEFAULT_YEARS) -> ParsedImpressions:
    """Parse MIND behaviors.tsv rows: ``N123-1`` is a shown and clicked item; times have
    MIND's one fixed format and must lie inside ``years``."""
    n = table.num_rows
    tokens, row = _tokens(table.column("impressions"))
    ok = np.asarray(pc.match_substring_regex(pa.array(tokens, pa.string()), _MIND_TOKEN))
    row_bad = np.bincount(row, minlength=n) == 0
    row_bad[row[~ok]] = True
    item = np.array([t[:-2] for t in tokens], dtype=object)
    clicked = np.array([t.endswith("-1") for t in tokens], dtype=bool)
    raw_time = pd.Series(table.column("time").to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(raw_time.str.strip(), format=_MIND_TIME, errors="coerce", utc=True)
    times = parsed.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64(0, "ns"))
    start, end = year_range_ns(years)
    times = times.astype(np.int64)
    ok = parsed.notna().to_numpy() & (times >= start) & (times <= end)
    time_values = (np.where(ok, times, 0), ok)
    raw_shown = table.column("impressions").to_numpy(zero_copy_only=False)
    shown = (item, row, clicked, row_bad)
    return _parse(table, "user_id", time_values, shown, "history", raw_shown)


def read_impressions(
    source: str,
    input_path: str,
    *,
    timestamp_unit: str | None = None,
    years: tuple[int, int] = DEFAULT_YEARS,
    encoding: str = "utf-8",
) -> tuple[list[SourceFile], list]:
    """Find and parse the impression files of ``source`` (``impressions`` or ``mind``).

    Timestamps are parsed as `recrl prepare` parses them: one format for the whole input
    (``timestamp_unit``, else MIND's fixed one, else voted by the first
    `adapters.SAMPLE_ROWS` rows of every file), values outside ``years`` invalid."""
    files = list_files(input_path)
    found: list[SourceFile] = []
    for info in files:
        name = posixpath.basename(info.path).lower()
        if source == "mind" and name == "behaviors.tsv":
            has_header = check_layout(info.path, MIND_BEHAVIORS, encoding)
            found.append(
                SourceFile(info.path, "behaviors", MIND_BEHAVIORS, has_header, info.size, encoding)
            )
        elif source == "impressions" and name.endswith((".csv", ".tsv")):
            delimiter = "\t" if name.endswith(".tsv") else ","
            probe = CsvLayout(GENERIC_COLUMNS, GENERIC_COLUMNS, delimiter, header=True)
            check_layout(info.path, probe, encoding)
            first = read_first_line(info.path, encoding)
            header = [h.strip().strip('"') for h in first.split(delimiter)]
            columns = (*GENERIC_COLUMNS, "history") if "history" in header else GENERIC_COLUMNS
            layout = CsvLayout(tuple(header), columns, delimiter, header=True)
            found.append(SourceFile(info.path, "impressions", layout, True, info.size, encoding))
    if not found:
        wanted = "behaviors.tsv" if source == "mind" else "*.csv or *.tsv impressions"
        seen = ", ".join(posixpath.basename(f.path) for f in files) or "no files"
        raise MissingInputError(f"no {wanted} file (found: {seen})", file=input_path)
    tables = []
    for index, source_file in enumerate(found):
        read = read_local([source_file], [index])
        if read:
            tables.append(pa.concat_tables(read, promote_options="permissive"))
    if source == "mind":
        return found, [parse_mind(table, years) for table in tables]
    time_format = timestamp_unit or "auto"
    if time_format == "auto":
        votes: Counter = Counter()
        for table in tables:
            votes += timestamp_votes(table.column("timestamp").slice(0, SAMPLE_ROWS), years)
        time_format = detect_timestamp_format(votes)
    return found, [parse_generic(table, time_format, years) for table in tables]


@dataclass(frozen=True)
class ImpressionRecords:
    records: Records
    raw_item_ids: np.ndarray
    """object [n_items]: raw id of each encoded item."""
    kept_rows: int
    """Impression rows that became page views."""


def impression_records(parsed: list[ParsedImpressions], history_len: int) -> ImpressionRecords:
    """Page views of every kept impression row (see the module docstring), all files."""
    offsets = np.cumsum([0] + [len(p.user) for p in parsed])[:-1]
    cat = np.concatenate

    def joined(name: str) -> np.ndarray:
        return cat([getattr(p, name) for p in parsed])

    def joined_rows(name: str) -> np.ndarray:  # row indices shifted to the joined table
        return cat([getattr(p, name) + o for p, o in zip(parsed, offsets, strict=True)])

    drop = joined("drop")
    kept = np.flatnonzero(pd.isna(drop))
    timestamp, line = joined("timestamp"), joined("line")
    file_index = np.repeat(np.arange(len(parsed)), [len(p.user) for p in parsed])
    user_code = np.full(len(drop), -1, dtype=np.int64)
    user_code[kept] = np.unique(joined("user")[kept].astype(str), return_inverse=True)[1]
    # Row order: by user, then time, file and line (the order the user saw the pages).
    order = kept[np.lexsort((line[kept], file_index[kept], timestamp[kept], user_code[kept]))]
    rank = np.full(len(drop), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))

    s_item, s_row, s_click = joined("shown_item"), joined_rows("shown_row"), joined("shown_clicked")
    h_item, h_row = joined("history_item"), joined_rows("history_row")
    raw_items, codes = np.unique(cat([s_item, h_item]).astype(str), return_inverse=True)
    s_code, h_code = codes[: len(s_item)], codes[len(s_item) :]
    pad_id = len(raw_items)

    # Shown sets in display order, ranked rows.
    s_rank = rank[s_row]
    by_token = np.lexsort((np.arange(len(s_rank)), s_rank))
    s_rank, s_code, s_click = s_rank[by_token], s_code[by_token], s_click[by_token]
    n_shown = np.bincount(s_rank, minlength=len(order))
    first = np.cumsum(n_shown) - n_shown
    slot = np.arange(len(s_rank)) - first[s_rank]
    shown = np.full((len(order), max(int(n_shown.max(initial=1)), 1)), pad_id, dtype=np.int64)
    shown[s_rank, slot] = s_code

    # Click stream per user: prior history of the user's first row, then clicks in order.
    row_user = user_code[order]
    first_row_of_user = np.r_[True, row_user[1:] != row_user[:-1]]
    h_rank = rank[h_row]
    h_keep = first_row_of_user[h_rank]
    h_rank, h_code = h_rank[h_keep], h_code[h_keep]
    n_clicks = np.bincount(s_rank[s_click], minlength=len(order))
    group_start = np.maximum.accumulate(np.where(first_row_of_user, np.arange(len(order)), 0))
    cum = np.cumsum(n_clicks) - n_clicks
    clicks_before_row = cum - cum[group_start]
    n_hist = np.bincount(h_rank, minlength=len(order))  # only first rows hold any
    stream_rank = cat([h_rank, s_rank[s_click]])
    stream_phase = cat([np.zeros(len(h_rank)), np.ones(int(s_click.sum()))])
    # Users are contiguous in rank order and a user's history belongs to their first row,
    # so sorting by (row rank, history before clicks) lays out each user's stream in order.
    stream_order = np.lexsort((np.arange(len(stream_rank)), stream_phase, stream_rank))
    stream_items = cat([h_code, s_code[s_click]])[stream_order]
    per_row_stream = n_hist + n_clicks
    row_stream_start = np.cumsum(per_row_stream) - per_row_stream
    user_stream_start = row_stream_start[group_start]

    # Records: one per click (display order), one per row without clicks.
    click_tokens = np.flatnonzero(s_click)
    c_rank = s_rank[click_tokens]
    within = np.arange(len(click_tokens)) - (np.cumsum(n_clicks) - n_clicks)[c_rank]
    none_rank = np.flatnonzero(n_clicks == 0)
    rec_rank = cat([c_rank, none_rank])
    rec_click = cat([slot[click_tokens], np.full(len(none_rank), NO_CLICK)])
    rec_before = cat([clicks_before_row[c_rank] + within, clicks_before_row[none_rank]])
    rec_sort = np.lexsort((cat([within, np.zeros(len(none_rank), dtype=np.int64)]), rec_rank))
    rec_rank, rec_click, rec_before = rec_rank[rec_sort], rec_click[rec_sort], rec_before[rec_sort]
    user_start = user_stream_start[rec_rank]
    position = user_start + n_hist[group_start[rec_rank]] + rec_before
    history = previous_clicks(stream_items, user_start, position, history_len, pad_id)
    records = Records(
        user=row_user[rec_rank],
        timestamp=timestamp[order][rec_rank],
        history=history,
        shown=shown[rec_rank],
        click=rec_click.astype(np.int64),
    )
    return ImpressionRecords(records, raw_items, kept_rows=len(order))
