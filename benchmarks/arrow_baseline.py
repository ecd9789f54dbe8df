"""The fastest simple way to build RC15 transitions: one process, pyarrow to read, numpy to
build, no per-session loop.

`prepare_bench.py` measures `recrl prepare` against this build (and against the pandas loop
in `pandas_baseline.py`). It follows the same recipe — exact duplicates dropped, sessions with
at most ``min_session_clicks`` clicks dropped, items encoded in sorted order, the seeded session
split, left-padded windows — and writes the same columns as parquet, so that the outputs can
be compared row by row (`assert_same_as_recrl`). What it leaves out is what recrl adds: value
validation with file and line of every bad row, drop counts per reason, the shard manifest
with checksums, atomic replacement and the spread over a cluster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from recrl.pipelines.prepare.split import SPLITS, assign_splits

EVENT_TYPES = {"session_id": pa.int64(), "timestamp": pa.timestamp("ns", tz="UTC"),
               "item_id": pa.int64()}  # fmt: skip
"""Column types of the YooChoose files: explicit, so pyarrow infers nothing."""


def read_yoochoose(clicks_csvs: list[Path], buys_csvs: list[Path]) -> dict[str, np.ndarray]:
    """Session, timestamp (ns), item and is_buy of every row of the click and buy files."""
    options = pcsv.ConvertOptions(column_types=EVENT_TYPES, include_columns=list(EVENT_TYPES))
    parts = []
    for paths, is_buy in ((clicks_csvs, False), (buys_csvs, True)):
        for path in paths:
            table = pcsv.read_csv(path, convert_options=options)
            parts.append((table, is_buy))
    columns = {
        "session_id": np.concatenate([t.column("session_id").to_numpy() for t, _ in parts]),
        "timestamp": np.concatenate(
            [pc.cast(t.column("timestamp"), pa.int64()).to_numpy() for t, _ in parts]
        ),
        "item_id": np.concatenate([t.column("item_id").to_numpy() for t, _ in parts]),
        "is_buy": np.concatenate([np.full(t.num_rows, b) for t, b in parts]),
    }
    return columns


def build_transitions(
    events: dict[str, np.ndarray], *, state_len: int = 10, min_session_clicks: int = 2,
    r_click: float = 0.2, r_buy: float = 1.0, seed: int = 0,
) -> dict[str, pa.Table]:  # fmt: skip
    """The three splits' transition tables of ``events`` (``read_yoochoose``)."""
    session, time, item, is_buy = (events[k] for k in ("session_id", "timestamp", "item_id",
                                                        "is_buy"))  # fmt: skip
    order = np.lexsort((item, is_buy, time, session))  # by session, time, is_buy, item
    session, time, item, is_buy = session[order], time[order], item[order], is_buy[order]
    # exact repeats sit next to each other after the sort
    repeat = np.zeros(len(session), dtype=bool)
    repeat[1:] = ((session[1:] == session[:-1]) & (time[1:] == time[:-1])
                  & (item[1:] == item[:-1]) & (is_buy[1:] == is_buy[:-1]))  # fmt: skip
    keep = ~repeat
    session, time, item, is_buy = session[keep], time[keep], item[keep], is_buy[keep]

    new_session = np.ones(len(session), dtype=bool)
    new_session[1:] = session[1:] != session[:-1]
    run = np.cumsum(new_session) - 1  # run index of each row
    clicks = np.bincount(run, weights=~is_buy)
    keep = clicks[run] > min_session_clicks
    session, time, item, is_buy = session[keep], time[keep], item[keep], is_buy[keep]

    item_ids, action = np.unique(item, return_inverse=True)
    action = action.astype(np.int32)
    pad_id = len(item_ids)
    first = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    session_ids = session[first]  # sorted, unique
    splits = assign_splits(session_ids, time[first], method="session", fractions=(0.8, 0.1, 0.1),
                           seed=seed)  # fmt: skip
    lengths = np.diff(np.r_[first, len(session)])
    session_index = np.repeat(np.arange(len(first)), lengths)
    step = np.arange(len(session)) - np.repeat(first, lengths)

    # state[i, j] = the item (state_len - j) events before i in its session, else pad
    back = np.arange(state_len, 0, -1)  # L, L-1, ..., 1
    source = np.arange(len(session))[:, None] - back[None, :]
    state = np.where(back[None, :] <= step[:, None], action[source.clip(0)], pad_id)
    next_state = np.concatenate([state[:, 1:], action[:, None]], axis=1)
    done = np.r_[session[1:] != session[:-1], True]

    columns = {
        "session_id": session_index.astype(np.int64),
        "step": step.astype(np.int32),
        "state": state.astype(np.int32),
        "state_len": np.minimum(step, state_len).astype(np.int32),
        "action": action,
        "reward": np.where(is_buy, r_buy, r_click).astype(np.float32),
        "is_buy": is_buy,
        "next_state": next_state.astype(np.int32),
        "next_state_len": np.minimum(step + 1, state_len).astype(np.int32),
        "done": done,
    }
    row_split = splits[session_index]
    tables = {}
    for code, name in enumerate(SPLITS):
        rows = np.flatnonzero(row_split == code)
        arrays = {}
        for key, values in columns.items():
            picked = values[rows]
            if picked.ndim == 2:  # fixed-size windows as list<int32> rows
                arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(picked.ravel()),
                                                                state_len)  # fmt: skip
            else:
                arrays[key] = pa.array(picked)
        tables[name] = pa.table(arrays)
    return tables


def build_yoochoose(folder: Path, out: Path, **recipe) -> dict[str, int]:
    """Read the click and buy files of ``folder``, build and write the splits to ``out``;
    returns rows per split."""
    events = read_yoochoose(sorted(folder.glob("*clicks*.csv")), sorted(folder.glob("*buys*.csv")))
    return write_tables(build_transitions(events, **recipe), out)


def write_tables(tables: dict[str, pa.Table], out: Path) -> dict[str, int]:
    """Each split's table as ``out/<split>.parquet``; returns rows per split."""
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    return {name: table.num_rows for name, table in tables.items()}


def assert_same_as_recrl(recrl_folder: Path, baseline_folder: Path) -> int:
    """Raise AssertionError unless every split of a `recrl prepare` output equals the
    baseline's row by row (rows in session, step order); returns the rows compared."""
    from recrl.pipelines.prepare.stages import list_to_matrix

    compared = 0
    for name in SPLITS:
        got = pq.read_table(recrl_folder / name)
        want = pq.read_table(baseline_folder / f"{name}.parquet")
        if got.num_rows != want.num_rows:
            raise AssertionError(f"{name}: recrl has {got.num_rows} rows, baseline {want.num_rows}")
        got_order = np.lexsort((got.column("step").to_numpy(), got.column("session_id").to_numpy()))
        for column in want.column_names:
            left, right = got.column(column), want.column(column)
            if column in ("state", "next_state"):
                left, right = list_to_matrix(left)[got_order], list_to_matrix(right)
            else:
                left, right = left.to_numpy()[got_order], right.to_numpy()
            same = np.allclose(left, right) if column == "reward" else np.array_equal(left, right)
            if not same:
                raise AssertionError(f"{name}: column {column} differs from the baseline")
        compared += got.num_rows
    return compared
