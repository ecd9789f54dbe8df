"""The canonical event table every source adapter is mapped to, and the drop reasons.

After parsing, a block of events has these columns (SPEC §1 input schema, typed):
``session_id`` (int64 or string), ``timestamp`` (int64 ns, UTC), ``item_id`` (int64 or
string), ``is_buy`` (bool), plus bookkeeping: ``_drop`` (uint8 reason code, 0 = kept),
``_file`` (int32 index into the list of source files), ``_line`` (int64, 1-based line in
that file) and ``_bad`` (the offending raw text of a dropped row, else null).
"""

from __future__ import annotations

SESSION_ID = "session_id"
TIMESTAMP = "timestamp"
ITEM_ID = "item_id"
EVENT = "event"
IS_BUY = "is_buy"
DROP = "_drop"
FILE = "_file"
LINE = "_line"
BAD = "_bad"

CLICK = "click"
PURCHASE = "purchase"
EXCLUDED = "excluded"
"""Event value an adapter gives to rows that its source defines but recrl drops by design
(RetailRocket ``transaction`` rows, Open Bandit impressions without a click)."""

KEPT = 0
DROP_REASONS: dict[int, str] = {
    1: "malformed_row",
    2: "invalid_session_id",
    3: "invalid_timestamp",
    4: "invalid_item_id",
    5: "invalid_event",
    6: "excluded_event",
    7: "rare_item",
    8: "short_session",
}
"""Why a row was dropped. Codes 1-5 are bad values (limited by ``max_invalid_fraction``);
6-8 are the cleaning recipe's choices."""
REASON_CODE = {name: code for code, name in DROP_REASONS.items()}
INVALID_REASONS = (
    "malformed_row",
    "invalid_session_id",
    "invalid_timestamp",
    "invalid_item_id",
    "invalid_event",
)
REASON_COLUMN = {
    "malformed_row": None,
    "invalid_session_id": SESSION_ID,
    "invalid_timestamp": TIMESTAMP,
    "invalid_item_id": ITEM_ID,
    "invalid_event": EVENT,
}
"""Canonical column whose value caused each bad-value reason (None: the whole row)."""

PARSED_COLUMNS = (SESSION_ID, TIMESTAMP, ITEM_ID, IS_BUY, DROP, FILE, LINE, BAD)
"""Columns of a parsed block, in order."""
