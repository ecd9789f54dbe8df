"""Column names of a transition batch, defined once.

`recrl.pipelines.prepare` writes these columns to parquet; the RLlib Learners, the evaluation code
and the tests read them. Sequences (`state`, `next_state`) are fixed-size int32 arrays of
length ``L`` padded with ``pad_id = n_items`` (most recent item last).
"""

SESSION_ID = "session_id"
"""Encoded session index (int64), useful for grouping evaluation rows."""
STEP = "step"
"""0-based position of the event inside its session (int32)."""
STATE = "state"
"""int32[L]: the previous ``L`` items of the session, left-padded with ``pad_id``."""
STATE_LEN = "state_len"
"""int32: number of real items in ``state`` (0 for the first event of a session)."""
ACTION = "action"
"""int32: the item the user interacted with (label-encoded, ``0..n_items-1``)."""
REWARD = "reward"
"""float32: ``r_click`` or ``r_buy``."""
IS_BUY = "is_buy"
"""bool: the event is a purchase."""
NEXT_STATE = "next_state"
"""int32[L]: ``state`` after appending ``action`` (the oldest item falls off)."""
NEXT_STATE_LEN = "next_state_len"
"""int32: number of real items in ``next_state``."""
DONE = "done"
"""bool: the event is the last of its session."""

TRANSITION_COLUMNS = (
    SESSION_ID,
    STEP,
    STATE,
    STATE_LEN,
    ACTION,
    REWARD,
    IS_BUY,
    NEXT_STATE,
    NEXT_STATE_LEN,
    DONE,
)
