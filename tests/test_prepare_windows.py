"""`build_windows`: the transitions of every event, against hand-built windows (design.md §1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from recrl.pipelines.prepare.windows import build_windows, session_starts

PAD = 99


def windows_of(sessions, items, state_len):
    return build_windows(np.asarray(sessions), np.asarray(items), state_len=state_len, pad_id=PAD)


def test_three_events_with_window_two():
    w = windows_of([7, 7, 7], [5, 6, 8], state_len=2)
    assert w.step.tolist() == [0, 1, 2]
    assert w.state.tolist() == [[PAD, PAD], [PAD, 5], [5, 6]]
    assert w.state_len.tolist() == [0, 1, 2]
    assert w.next_state.tolist() == [[PAD, 5], [5, 6], [6, 8]]
    assert w.next_state_len.tolist() == [1, 2, 2]
    assert w.done.tolist() == [False, False, True]
    assert w.state.dtype == np.int32 and w.next_state.dtype == np.int32
    assert w.state_len.dtype == np.int32 and w.next_state_len.dtype == np.int32
    assert w.done.dtype == bool


def test_no_item_leaks_across_a_session_boundary():
    w = windows_of([1, 1, 2, 2], [5, 6, 7, 8], state_len=3)
    assert w.step.tolist() == [0, 1, 0, 1]
    assert w.state.tolist() == [
        [PAD, PAD, PAD],
        [PAD, PAD, 5],
        [PAD, PAD, PAD],  # first event of session 2 sees nothing of session 1
        [PAD, PAD, 7],
    ]
    assert w.next_state.tolist() == [
        [PAD, PAD, 5],
        [PAD, 5, 6],
        [PAD, PAD, 7],
        [PAD, 7, 8],
    ]
    assert w.state_len.tolist() == [0, 1, 0, 1]
    assert w.next_state_len.tolist() == [1, 2, 1, 2]
    assert w.done.tolist() == [False, True, False, True]


def test_session_longer_than_window_drops_the_oldest_item():
    w = windows_of([3] * 5, [1, 2, 3, 4, 5], state_len=2)
    assert w.state.tolist() == [[PAD, PAD], [PAD, 1], [1, 2], [2, 3], [3, 4]]
    assert w.next_state.tolist() == [[PAD, 1], [1, 2], [2, 3], [3, 4], [4, 5]]
    assert w.state_len.tolist() == [0, 1, 2, 2, 2]
    assert w.next_state_len.tolist() == [1, 2, 2, 2, 2]
    assert w.done.tolist() == [False, False, False, False, True]


def test_single_event_session_has_an_empty_state_and_is_done():
    w = windows_of([4], [42], state_len=3)
    assert w.state.tolist() == [[PAD, PAD, PAD]]
    assert w.state_len.tolist() == [0]
    assert w.next_state.tolist() == [[PAD, PAD, 42]]
    assert w.next_state_len.tolist() == [1]
    assert w.done.tolist() == [True]


def test_single_event_session_between_others_and_string_session_keys():
    w = windows_of(["a", "a", "b", "c", "c"], [1, 2, 3, 4, 5], state_len=2)
    assert w.step.tolist() == [0, 1, 0, 0, 1]
    assert w.state.tolist() == [[PAD, PAD], [PAD, 1], [PAD, PAD], [PAD, PAD], [PAD, 4]]
    assert w.next_state.tolist() == [[PAD, 1], [1, 2], [PAD, 3], [PAD, 4], [4, 5]]
    assert w.done.tolist() == [False, True, True, False, True]


def test_window_of_one_holds_only_the_previous_item():
    w = windows_of([1, 1, 1], [5, 6, 7], state_len=1)
    assert w.state.tolist() == [[PAD], [5], [6]]
    assert w.next_state.tolist() == [[5], [6], [7]]
    assert w.state_len.tolist() == [0, 1, 1]
    assert w.next_state_len.tolist() == [1, 1, 1]


def test_empty_block_gives_empty_arrays():
    w = windows_of(np.empty(0, np.int64), np.empty(0, np.int64), state_len=3)
    assert w.state.shape == (0, 3) and w.next_state.shape == (0, 3)
    assert len(w.step) == len(w.done) == 0


def test_session_starts_marks_each_new_run():
    assert session_starts(np.array([1, 1, 2, 2, 2, 1])).tolist() == [
        True, False, True, False, False, True
    ]  # fmt: skip
    assert session_starts(np.array([], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("state_len", [0, -1])
def test_window_length_below_one_is_rejected(state_len):
    with pytest.raises(ValueError, match="state_len must be >= 1"):
        windows_of([1, 1], [1, 2], state_len=state_len)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="session_codes has 3 rows but items has 2"):
        windows_of([1, 1, 1], [1, 2], state_len=2)


# --- properties over random sessions ---------------------------------------------------


@st.composite
def session_blocks(draw):
    """Sessions of random lengths (1..15) of items 0..49, with distinct session keys."""
    sessions = draw(st.lists(st.lists(st.integers(0, 49), min_size=1, max_size=15), max_size=12))
    keys = draw(
        st.lists(
            st.integers(-1000, 1000), min_size=len(sessions), max_size=len(sessions), unique=True
        )
    )
    return sessions, keys, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None)
@given(session_blocks())
def test_windows_match_a_per_session_reference(block):
    sessions, keys, state_len = block
    codes = np.array([k for k, s in zip(keys, sessions, strict=True) for _ in s], dtype=np.int64)
    items = np.array([i for s in sessions for i in s], dtype=np.int64)
    w = build_windows(codes, items, state_len=state_len, pad_id=PAD)

    n = sum(len(s) for s in sessions)
    assert w.state.shape == w.next_state.shape == (n, state_len)
    assert len(w.step) == len(w.state_len) == len(w.next_state_len) == len(w.done) == n
    assert int(w.done.sum()) == len(sessions)  # one terminal row per session

    row = 0
    for session in sessions:
        for step, item in enumerate(session):
            history = session[max(0, step - state_len) : step]
            k = len(history)
            assert w.step[row] == step
            assert w.state_len[row] == min(step, state_len) == k
            # Padding only at the front, then the last min(step, L) items, most recent last.
            assert w.state[row, : state_len - k].tolist() == [PAD] * (state_len - k)
            assert w.state[row, state_len - k :].tolist() == history
            # next_state = state with the action appended.
            assert w.next_state[row].tolist() == [*w.state[row, 1:].tolist(), item]
            assert w.next_state_len[row] == min(step + 1, state_len)
            last = step == len(session) - 1
            assert bool(w.done[row]) == last
            if not last:  # within a session the next row's state is this row's next_state
                assert w.state[row + 1].tolist() == w.next_state[row].tolist()
            row += 1
    assert row == n
