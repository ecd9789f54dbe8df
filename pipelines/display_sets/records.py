"""Layout of stored display-set records, click histories, the user split, write and load.

Stored under the output folder:

* ``train.parquet``, ``val.parquet``, ``test.parquet``: one row per page view with
  ``user`` (int64, encoded), ``timestamp`` (int64 ns), ``history`` (int32[m], previous
  clicks, most recent last, left-padded with ``pad_id``), ``shown`` (int32[K], display
  order, right-padded with ``pad_id``), ``click`` (int32 slot in ``shown``, -1 = no click);
* ``items.parquet``: ``item`` (encoded), ``raw_item_id`` and one float32 column per item
  feature (``feature_names`` in meta.json);
* ``meta.json``: sizes, split counts, feature names, checks, and where every input row went
  (kept + dropped per reason = input, as in ``recrl prepare``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from recrl.models.user_model.data import NO_CLICK, DisplaySetArrays
from recrl.pipelines.prepare.errors import MissingInputError
from recrl.pipelines.prepare.split import SPLITS, assign_splits

USER, TIMESTAMP, HISTORY, SHOWN, CLICK = "user", "timestamp", "history", "shown", "click"
ITEM, RAW_ITEM_ID = "item", "raw_item_id"
META_FILE, ITEMS_FILE = "meta.json", "items.parquet"


def previous_clicks(
    stream_items: np.ndarray,
    stream_start: np.ndarray,
    positions: np.ndarray,
    history_len: int,
    pad_id: int,
) -> np.ndarray:
    """The ``history_len`` clicks before each record, from a per-user click stream.

    ``stream_items`` [S] holds every user's clicks in order, users one after another;
    record ``r`` sees ``stream_items[positions[r] - m : positions[r]]`` but nothing before
    its user's first click ``stream_start[r]``. Returns int64 [R, m], most recent last,
    left-padded with ``pad_id``.
    """
    out = np.full((len(positions), history_len), pad_id, dtype=np.int64)
    for lag in range(1, history_len + 1):
        source = positions - lag
        ok = source >= stream_start
        out[ok, history_len - lag] = stream_items[source[ok]]
    return out


def split_users(n_users: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) of users ``0..n_users-1`` (seeded permutation)."""
    ids = np.arange(n_users)
    return assign_splits(ids, ids, method="session", fractions=fractions, seed=seed)


@dataclass(frozen=True)
class Records:
    """All page views before the split (encoded ids), aligned arrays."""

    user: np.ndarray
    """int64 [N]"""
    timestamp: np.ndarray
    """int64 [N], ns"""
    history: np.ndarray
    """int64 [N, m]"""
    shown: np.ndarray
    """int64 [N, K]"""
    click: np.ndarray
    """int64 [N], slot or -1"""


def records_table(records: Records, rows: np.ndarray) -> pa.Table:
    m, k = records.history.shape[1], records.shown.shape[1]
    return pa.table(
        {
            USER: pa.array(records.user[rows], pa.int64()),
            TIMESTAMP: pa.array(records.timestamp[rows], pa.int64()),
            HISTORY: pa.FixedSizeListArray.from_arrays(
                pa.array(records.history[rows].astype(np.int32).reshape(-1)), m
            ),
            SHOWN: pa.FixedSizeListArray.from_arrays(
                pa.array(records.shown[rows].astype(np.int32).reshape(-1)), k
            ),
            CLICK: pa.array(records.click[rows].astype(np.int32)),
        }
    )


def split_summary(records: Records, rows: np.ndarray) -> dict[str, int]:
    clicks = int(np.count_nonzero(records.click[rows] != NO_CLICK))
    return {
        "users": len(np.unique(records.user[rows])),
        "records": len(rows),
        "clicks": clicks,
        "no_clicks": len(rows) - clicks,
    }


def write_records(
    output_path: str,
    records: Records,
    user_split: np.ndarray,
    raw_item_ids: np.ndarray,
    features: np.ndarray,
    feature_names: list[str],
) -> dict[str, dict[str, int]]:
    """Write the three split files and items.parquet; returns per-split counts."""
    os.makedirs(output_path, exist_ok=True)
    summary = {}
    for code, name in enumerate(SPLITS):
        rows = np.flatnonzero(user_split[records.user] == code)
        pq.write_table(records_table(records, rows), os.path.join(output_path, f"{name}.parquet"))
        summary[name] = split_summary(records, rows)
    columns: dict[str, Any] = {
        ITEM: pa.array(np.arange(len(raw_item_ids), dtype=np.int32)),
        RAW_ITEM_ID: pa.array([str(x) for x in raw_item_ids], pa.string()),
    }
    for j, name in enumerate(feature_names):
        columns[name] = pa.array(features[:, j].astype(np.float32))
    pq.write_table(pa.table(columns), os.path.join(output_path, ITEMS_FILE))
    return summary


def write_meta(output_path: str, meta: dict[str, Any]) -> None:
    Path(output_path, META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


@dataclass(frozen=True)
class DisplaySetDataset:
    """A stored display-set folder loaded into memory."""

    meta: dict[str, Any]
    """Contents of meta.json."""
    splits: dict[str, DisplaySetArrays]
    """``train``, ``val``, ``test`` page views."""
    item_features: np.ndarray
    """float32 [n_items + 1, F]: feature rows, the padding row last and all zero."""
    feature_names: list[str]
    """Names of the F feature columns (empty: the model learns an embedding instead)."""

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])


def _arrays(table: pa.Table, pad_id: int) -> DisplaySetArrays:
    def matrix(name: str) -> np.ndarray:
        column = table.column(name).combine_chunks()
        width = column.type.list_size
        return column.flatten().to_numpy().astype(np.int64).reshape(-1, width)

    return DisplaySetArrays(
        history=matrix(HISTORY),
        shown=matrix(SHOWN),
        click=table.column(CLICK).to_numpy().astype(np.int64),
        user=table.column(USER).to_numpy().astype(np.int64),
        pad_id=pad_id,
    )


def load_display_sets(path: str | os.PathLike) -> DisplaySetDataset:
    """Read a folder written by `recrl.pipelines.display_sets.build.build_display_sets`."""
    root = Path(path)
    if not (root / META_FILE).exists():
        raise MissingInputError(
            "not a display-set folder (no meta.json); build one with `recrl usermodel build`",
            file=str(root),
        )
    meta = json.loads((root / META_FILE).read_text())
    pad_id = int(meta["pad_id"])
    splits = {name: _arrays(pq.read_table(root / f"{name}.parquet"), pad_id) for name in SPLITS}
    items = pq.read_table(root / ITEMS_FILE)
    names = list(meta["feature_names"])
    features = np.zeros((pad_id + 1, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        features[:pad_id, j] = items.column(name).to_numpy()
    return DisplaySetDataset(meta, splits, features, names)
