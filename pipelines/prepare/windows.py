"""Sliding-window transitions of a block of sessions, vectorised with numpy.

Input rows are events sorted by (session, time); output row ``i`` is the transition of
event ``i``. The loop runs over the ``L`` window offsets, never over sessions or events, so
a block of a million events costs a few array passes (design.md §1, "Transitions").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """Per-event transition arrays; all have ``n_events`` rows."""

    step: np.ndarray
    """int32 [N]: 0-based index of the event inside its session."""
    state: np.ndarray
    """int32 [N, L]: previous ``L`` items, most recent last, left-padded with ``pad_id``."""
    state_len: np.ndarray
    """int32 [N]: number of real items in ``state``."""
    next_state: np.ndarray
    """int32 [N, L]: ``state`` with the event's own item appended."""
    next_state_len: np.ndarray
    """int32 [N]: number of real items in ``next_state``."""
    done: np.ndarray
    """bool [N]: the event is the last of its session."""


def session_starts(session_codes: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that begin a new session run in a sorted array."""
    starts = np.ones(len(session_codes), dtype=bool)
    if len(session_codes) > 1:
        np.not_equal(session_codes[1:], session_codes[:-1], out=starts[1:])
    return starts


def build_windows(
    session_codes: np.ndarray, items: np.ndarray, *, state_len: int, pad_id: int
) -> Windows:
    """Build the state/next-state windows of every event.

    Args:
        session_codes: [N] session key of each event; rows of one session are contiguous
            and in time order (any dtype that supports ``!=``).
        items: [N] int item ids of the events.
        state_len: ``L``, the window length.
        pad_id: id written into empty window slots (``n_items``).
    """
    if state_len < 1:
        raise ValueError(f"state_len must be >= 1, got {state_len}")
    n = len(items)
    if len(session_codes) != n:
        raise ValueError(f"session_codes has {len(session_codes)} rows but items has {n}")
    items = np.asarray(items, dtype=np.int32)
    starts = session_starts(np.asarray(session_codes))
    row = np.arange(n, dtype=np.int64)
    start_row = np.maximum.accumulate(np.where(starts, row, 0))
    step = (row - start_row).astype(np.int32)

    state = np.full((n, state_len), pad_id, dtype=np.int32)
    for offset in range(1, state_len + 1):
        # Slot L-offset holds the item `offset` events back, if the session has one.
        has_item = step >= offset
        rows = np.flatnonzero(has_item)
        state[rows, state_len - offset] = items[rows - offset]
    length = np.minimum(step, state_len).astype(np.int32)

    next_state = np.empty_like(state)
    next_state[:, :-1] = state[:, 1:]
    next_state[:, -1] = items
    next_length = np.minimum(step + 1, state_len).astype(np.int32)

    done = np.ones(n, dtype=bool)
    if n > 1:
        done[:-1] = starts[1:]
    return Windows(step, state, length, next_state, next_length, done)
