"""The straightforward way to build RC15 transitions: pandas, one Python loop per session.

This is the baseline `prepare_bench.py` measures `recrl prepare` against. It follows the
same recipe (RC15 cleaning, sorted label encoding, seeded session split, left-padded
windows) so that both outputs can be compared row by row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from recrl.pipelines.prepare.split import SPLITS, assign_splits


def yoochoose_events(clicks_csv: str, buys_csv: str) -> pd.DataFrame:
    clicks = pd.read_csv(clicks_csv, usecols=["session_id", "timestamp", "item_id"])
    buys = pd.read_csv(buys_csv, usecols=["session_id", "timestamp", "item_id"])
    clicks["is_buy"] = False
    buys["is_buy"] = True
    events = pd.concat([clicks, buys], ignore_index=True)
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601")
    return events


def build_transitions(
    events: pd.DataFrame,
    *,
    state_len: int = 10,
    min_session_clicks: int = 2,
    r_click: float = 0.2,
    r_buy: float = 1.0,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    # prepare's cleaning: exact repeats of an event are dropped (`duplicate_event`)
    events = events.drop_duplicates(["session_id", "item_id", "timestamp", "is_buy"])
    events = events.sort_values(["session_id", "timestamp", "is_buy", "item_id"])
    clicks = (~events["is_buy"]).groupby(events["session_id"]).transform("sum")
    events = events[clicks > min_session_clicks]

    item_ids = np.sort(events["item_id"].unique())
    item_code = {item: code for code, item in enumerate(item_ids)}
    pad_id = len(item_ids)
    session_ids = np.sort(events["session_id"].unique())
    starts = events.groupby("session_id")["timestamp"].min().loc[session_ids]
    splits = assign_splits(
        session_ids,
        starts.to_numpy(dtype="datetime64[ns]").astype(np.int64),
        method="session",
        fractions=(0.8, 0.1, 0.1),
        seed=seed,
    )
    session_split = dict(zip(session_ids, splits, strict=True))
    session_index = {sid: i for i, sid in enumerate(session_ids)}

    rows: dict[int, list] = {0: [], 1: [], 2: []}
    for session_id, group in events.groupby("session_id", sort=True):
        history: list[int] = []
        out = rows[session_split[session_id]]
        n = len(group)
        for step, row in enumerate(group.itertuples(index=False)):
            action = item_code[row.item_id]
            recent = history[-state_len:]
            state = [pad_id] * (state_len - len(recent)) + recent
            history.append(action)
            following = history[-state_len:]
            next_state = [pad_id] * (state_len - len(following)) + following
            out.append(
                (
                    session_index[session_id],
                    step,
                    state,
                    len(recent),
                    action,
                    r_buy if row.is_buy else r_click,
                    bool(row.is_buy),
                    next_state,
                    len(following),
                    step == n - 1,
                )
            )
    columns = [
        "session_id",
        "step",
        "state",
        "state_len",
        "action",
        "reward",
        "is_buy",
        "next_state",
        "next_state_len",
        "done",
    ]
    return {name: pd.DataFrame(rows[code], columns=columns) for code, name in enumerate(SPLITS)}


def generated_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Events of a generated-sessions frame as `recrl prepare --source generic` reads them
    (ids as strings, so both sides sort and encode them the same way)."""
    return pd.DataFrame(
        {
            "session_id": frame["session_id"].astype(str),
            "timestamp": pd.to_datetime(frame["timestamp"], utc=True),
            "item_id": frame["item_id"].astype(str),
            "is_buy": frame["event"] == "purchase",
        }
    )


def read_split(folder, name: str) -> pd.DataFrame:
    """A split written by `recrl prepare`, sequences as Python lists, in session order."""
    import pyarrow.parquet as pq
    from recrl.models import batch as cols
    from recrl.pipelines.prepare.stages import list_to_matrix

    table = pq.read_table(f"{folder}/{name}")
    frame = table.drop_columns([cols.STATE, cols.NEXT_STATE]).to_pandas()
    frame[cols.STATE] = list_to_matrix(table.column(cols.STATE)).tolist()
    frame[cols.NEXT_STATE] = list_to_matrix(table.column(cols.NEXT_STATE)).tolist()
    return frame.sort_values([cols.SESSION_ID, cols.STEP]).reset_index(drop=True)


def assert_same_transitions(folder, expected: dict[str, pd.DataFrame]) -> int:
    """Raise AssertionError unless every split in ``folder`` equals ``expected`` row by row;
    returns the number of rows compared."""
    compared = 0
    for name in SPLITS:
        got = read_split(folder, name)
        want = expected[name].sort_values(["session_id", "step"]).reset_index(drop=True)
        if len(got) != len(want):
            raise AssertionError(f"{name}: {len(got)} rows, reference has {len(want)}")
        for column in want.columns:
            left, right = got[column].tolist(), want[column].tolist()
            same = np.allclose(left, right) if column == "reward" else left == right
            if not same:
                raise AssertionError(f"{name}: column {column} differs from the reference")
        compared += len(got)
    return compared
