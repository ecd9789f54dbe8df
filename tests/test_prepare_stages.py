"""Per-block steps of `recrl prepare` on hand-made blocks (Ray only orchestrates these)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from recrl.models import batch as cols
from recrl.pipelines.prepare import schema, stages
from recrl.pipelines.prepare.shuffle import _partition

CODE = schema.REASON_CODE


def parsed_block(rows: list[tuple]) -> pa.Table:
    """A parsed block from (session, timestamp, item, is_buy, drop, file, line, bad) tuples."""
    names = schema.PARSED_COLUMNS
    types = (pa.int64(), pa.int64(), pa.int64(), pa.bool_(), pa.uint8(), pa.int32(), pa.int64(),
             pa.string())  # fmt: skip
    return pa.table(
        {
            n: pa.array([r[i] for r in rows], t)
            for i, (n, t) in enumerate(zip(names, types, strict=True))
        }
    )


# Block A holds file 0, block B file 1; session 1 spans both blocks.
BLOCK_A = parsed_block(
    [
        (1, 10, 100, False, 0, 0, 5, None),
        (1, 20, 101, True, 0, 0, 6, None),
        (2, 15, 100, False, 0, 0, 7, None),
        (0, 0, 0, False, CODE["invalid_timestamp"], 0, 9, "x9"),
        (0, 0, 0, False, CODE["invalid_timestamp"], 0, 4, "x4"),  # smaller line, later row
        (0, 0, 0, False, CODE["malformed_row"], 0, 8, "bad,row"),
    ]
)
BLOCK_B = parsed_block(
    [
        (1, 5, 102, False, 0, 1, 2, None),
        (3, 30, 101, False, 0, 1, 3, None),
        (0, 0, 0, False, CODE["invalid_timestamp"], 1, 1, "y1"),
        (4, 0, 0, False, CODE["invalid_item_id"], 1, 5, ""),
    ]
)


def test_parsed_stats_of_one_block():
    stats = stages.parsed_stats(BLOCK_A)
    assert stats.rows == 6
    assert dict(stats.drops) == {"invalid_timestamp": 2, "malformed_row": 1}
    assert stats.examples == {"invalid_timestamp": (0, 4, "x4"), "malformed_row": (0, 8, "bad,row")}
    assert stats.item_ids.tolist() == [100, 101]
    assert stats.item_counts.tolist() == [2, 1]
    assert stats.sessions.ids.tolist() == [1, 2]
    assert stats.sessions.clicks.tolist() == [1, 1]
    assert stats.sessions.events.tolist() == [2, 1]
    assert stats.sessions.start.tolist() == [10, 15]


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_parsed_stats_merge_across_blocks(order):
    a, b = stages.parsed_stats(BLOCK_A), stages.parsed_stats(BLOCK_B)
    merged = a.merge(b) if order == "ab" else b.merge(a)
    assert merged.rows == 10
    assert dict(merged.drops) == {"invalid_timestamp": 3, "malformed_row": 1, "invalid_item_id": 1}
    # First example = smallest (file, line): file 0 line 4 beats file 1 line 1.
    assert merged.examples == {
        "invalid_timestamp": (0, 4, "x4"),
        "malformed_row": (0, 8, "bad,row"),
        "invalid_item_id": (1, 5, ""),
    }
    assert merged.item_ids.tolist() == [100, 101, 102]
    assert merged.item_counts.tolist() == [2, 2, 1]
    sessions = merged.sessions
    assert sessions.ids.tolist() == [1, 2, 3]
    assert sessions.events.tolist() == [3, 1, 1]  # session 1: two rows in A, one in B
    assert sessions.clicks.tolist() == [2, 1, 1]  # its purchase is not a click
    assert sessions.start.tolist() == [5, 15, 30]  # earliest over both blocks
    assert sessions.events.dtype == sessions.clicks.dtype == np.int64


def test_rare_items_do_not_count_towards_sessions_but_stay_in_item_counts():
    stats = stages.parsed_stats(BLOCK_A, np.array([101]))
    assert stats.item_counts.tolist() == [2, 1]
    assert stats.sessions.ids.tolist() == [1, 2]
    assert stats.sessions.events.tolist() == [1, 1]
    assert stats.sessions.clicks.tolist() == [1, 1]


def test_session_summary_with_string_ids():
    summary = stages.SessionSummary.of(
        np.array(["b", "a", "b"], dtype=object), np.array([True, False, False]), np.array([9, 4, 2])
    )
    other = stages.SessionSummary.of(
        np.array(["c", "a"], dtype=object), np.array([False, True]), np.array([1, 3])
    )
    merged = summary.merge(other)
    assert merged.ids.tolist() == ["a", "b", "c"]
    assert merged.events.tolist() == [2, 2, 1]
    assert merged.clicks.tolist() == [1, 1, 1]
    assert merged.start.tolist() == [3, 2, 1]


# --- kept rows, encoding and transitions ---------------------------------------------------

# Sessions 10 and 30 are kept (10 → train, 30 → test); 20 is not; item 400 is rare.
KEPT = stages.KeptSessions(
    session_ids=np.array([10, 30]), session_splits=np.array([0, 2], np.int8),
    rare_items=np.array([400]),
)  # fmt: skip
CATALOGUE = np.array([100, 200, 300])  # encoded 0, 1, 2; pad_id = 3
EVENTS = parsed_block(
    [
        (30, 50, 300, False, 0, 0, 1, None),
        (10, 20, 100, True, 0, 0, 2, None),
        (10, 20, 200, False, 0, 0, 3, None),  # same time: the click goes first
        (20, 1, 100, False, 0, 0, 4, None),  # session not kept
        (10, 5, 300, False, 0, 0, 5, None),
        (30, 40, 100, False, 0, 0, 6, None),
        (10, 7, 200, False, CODE["invalid_timestamp"], 0, 7, "x"),  # dropped row
        (10, 30, 400, False, 0, 0, 8, None),  # rare item
    ]
)


def test_kept_item_counts_per_split():
    counts = stages.kept_item_counts(EVENTS, KEPT)
    assert sorted(counts) == [0, 1, 2]
    ids, n, buys = counts[0]
    assert (ids.tolist(), n.tolist(), buys) == ([100, 200, 300], [1, 1, 1], 1)
    ids, n, buys = counts[1]
    assert (ids.tolist(), n.tolist(), buys) == ([], [], 0)
    ids, n, buys = counts[2]
    assert (ids.tolist(), n.tolist(), buys) == ([100, 300], [1, 1], 0)

    doubled = stages.merge_item_counts(counts, counts)
    assert doubled[0][1].tolist() == [2, 2, 2] and doubled[0][2] == 2
    assert doubled[2][0].tolist() == [100, 300] and doubled[2][1].tolist() == [2, 2]


def test_tag_kept_events_encodes_sessions_items_and_splits():
    tagged = stages.tag_kept_events(EVENTS, kept=KEPT, items=CATALOGUE)
    assert tagged.column_names == [
        cols.SESSION_ID, schema.TIMESTAMP, cols.ACTION, cols.IS_BUY, stages.SPLIT
    ]  # fmt: skip
    assert tagged[cols.SESSION_ID].to_pylist() == [1, 0, 0, 0, 1]
    assert tagged[schema.TIMESTAMP].to_pylist() == [50, 20, 20, 5, 40]
    assert tagged[cols.ACTION].to_pylist() == [2, 0, 1, 2, 0]
    assert tagged[cols.IS_BUY].to_pylist() == [False, True, False, False, False]
    assert tagged[stages.SPLIT].to_pylist() == [2, 0, 0, 0, 2]
    assert tagged[cols.SESSION_ID].type == pa.int64()
    assert tagged[cols.ACTION].type == pa.int32()


def test_no_kept_session_keeps_no_row():
    nothing = stages.KeptSessions(np.array([], np.int64), np.array([], np.int8), None)
    assert stages.tag_kept_events(EVENTS, kept=nothing, items=CATALOGUE).num_rows == 0


PAD = 3
EXPECTED_TRANSITIONS = {
    # session 0 (raw 10): item 2 at t5, then at t20 the click of item 1 before the purchase
    # of item 0 (click first although the item id is larger); session 1 (raw 30) after it
    cols.SESSION_ID: [0, 0, 0, 1, 1],
    cols.STEP: [0, 1, 2, 0, 1],
    cols.STATE: [[PAD, PAD], [PAD, 2], [2, 1], [PAD, PAD], [PAD, 0]],
    cols.STATE_LEN: [0, 1, 2, 0, 1],
    cols.ACTION: [2, 1, 0, 0, 2],
    cols.REWARD: [0.2, 0.2, 1.0, 0.2, 0.2],
    cols.IS_BUY: [False, False, True, False, False],
    cols.NEXT_STATE: [[PAD, 2], [2, 1], [1, 0], [PAD, 0], [0, 2]],
    cols.NEXT_STATE_LEN: [1, 2, 2, 1, 2],
    cols.DONE: [False, False, True, False, True],
    stages.SPLIT: [0, 0, 0, 2, 2],
}


def transitions(table: pa.Table) -> pa.Table:
    return stages.session_transitions(table, state_len=2, pad_id=PAD, r_click=0.2, r_buy=1.0)


def test_session_transitions_order_rewards_and_split():
    out = transitions(stages.tag_kept_events(EVENTS, kept=KEPT, items=CATALOGUE))
    got = out.to_pydict()
    got[cols.REWARD] = [round(r, 6) for r in got[cols.REWARD]]
    assert got == EXPECTED_TRANSITIONS
    assert out[cols.STATE].type == pa.list_(pa.int32(), 2)
    assert out[cols.NEXT_STATE].type == pa.list_(pa.int32(), 2)
    assert out[cols.REWARD].type == pa.float32()


def test_session_transitions_do_not_depend_on_the_input_order():
    tagged = stages.tag_kept_events(EVENTS, kept=KEPT, items=CATALOGUE)
    reference = transitions(tagged)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(tagged.num_rows)
        assert transitions(tagged.take(pa.array(order))).equals(reference)


def test_select_split_keeps_one_split_without_the_split_column():
    out = transitions(stages.tag_kept_events(EVENTS, kept=KEPT, items=CATALOGUE))
    test = stages.select_split(out, code=2)
    assert stages.SPLIT not in test.column_names
    assert test[cols.SESSION_ID].to_pylist() == [1, 1]
    assert test[cols.ACTION].to_pylist() == [0, 2]
    assert stages.select_split(out, code=0).num_rows == 3
    assert stages.select_split(out, code=1).num_rows == 0


# --- tensor columns and the shuffle's partitioning --------------------------------------


def test_fixed_size_list_round_trip():
    matrix = np.arange(12, dtype=np.int64).reshape(3, 4).T  # non-contiguous, int64
    column = stages.fixed_size_list(matrix)
    assert column.type == pa.list_(pa.int32(), 3)
    assert column.to_pylist() == matrix.tolist()
    back = stages.list_to_matrix(column)
    assert back.dtype == np.int32 and back.tolist() == matrix.tolist()
    chunked = pa.chunked_array([column.slice(0, 1), column.slice(1)])
    assert stages.list_to_matrix(chunked).tolist() == matrix.tolist()


@pytest.mark.parametrize("n", [1, 3, 7])
def test_partition_puts_every_row_in_key_mod_n(n):
    keys = np.random.default_rng(n).integers(0, 50, size=200)
    table = pa.table({"key": pa.array(keys), "row": pa.array(np.arange(200))})
    parts = _partition(table, "key", n)
    assert len(parts) == n
    seen = []
    for j, part in enumerate(parts):
        assert (part["key"].to_numpy() % n == j).all()
        rows = part["row"].to_numpy()
        assert (np.diff(rows) > 0).all()  # stable: input order kept inside a partition
        seen.extend(rows.tolist())
    assert sorted(seen) == list(range(200))  # nothing lost, nothing duplicated


def test_partition_of_an_empty_table():
    parts = _partition(pa.table({"key": pa.array([], pa.int64())}), "key", 4)
    assert [p.num_rows for p in parts] == [0, 0, 0, 0]


def test_dedup_and_count_counts_every_row_and_keeps_the_valid_ones_narrow():
    repeat = parsed_block([(1, 10, 100, False, 0, 2, 1, None)])  # block A's first row again
    block = pa.concat_tables([BLOCK_A, repeat])
    narrow, stats = stages.dedup_and_count(block)
    assert stats.rows == 7
    assert dict(stats.drops) == {"invalid_timestamp": 2, "malformed_row": 1, "duplicate_event": 1}
    assert stats.examples["duplicate_event"][:2] == (2, 1)  # the later file's copy is dropped
    assert narrow.column_names == list(stages.VALID_COLUMNS)
    assert narrow.column(schema.SESSION_ID).to_pylist() == [1, 1, 2]
    assert narrow.column(schema.DROP).to_pylist() == [0, 0, 0]
    empty, none = stages.dedup_and_count(block.slice(0, 0))
    assert empty.num_rows == 0 and none.rows == 0
