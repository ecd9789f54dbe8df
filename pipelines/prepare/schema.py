"""The canonical event table every source adapter is mapped to, and the drop reasons.

After parsing, a block of events has these columns (design.md §1 input schema, typed):
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
    9: "duplicate_event",
}
"""Why a row was dropped. Codes 1-5 are bad values (limited by ``max_invalid_fraction``);
6-9 are the cleaning recipe's choices."""
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

DROP_REASON_HELP = {
    "malformed_row": "a line with the wrong number of fields, or a quoted value holding a "
    "line break",
    "invalid_session_id": "session id missing, empty, nan/null/None, or not an integer "
    "where the source has integer ids",
    "invalid_timestamp": "a timestamp that does not fit the column's one format, or lies "
    "outside --time-range",
    "invalid_item_id": "item id missing, empty, nan/null/None, or not an integer where the "
    "source has integer ids",
    "invalid_event": "an event value the source does not define",
    "excluded_event": "an event the source defines but recrl drops by design (RetailRocket "
    "transaction, Open Bandit impression without a click)",
    "rare_item": "an item with at most --min-item-count events",
    "short_session": "a session with at most --min-session-clicks clicks",
    "duplicate_event": "an exact repeat of an earlier event (session, item, timestamp, "
    "event); one copy is kept (--keep-duplicates keeps all)",
}
"""One phrase per drop reason, for `recrl prepare --help` and the README."""

PARSED_COLUMNS = (SESSION_ID, TIMESTAMP, ITEM_ID, IS_BUY, DROP, FILE, LINE, BAD)
"""Columns of a parsed block, in order."""
