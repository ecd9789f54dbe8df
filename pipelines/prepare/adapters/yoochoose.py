"""``yoochoose``: the YooChoose log of the RecSys Challenge 2015 (RC15, the SQN/SA2C data).

Two headerless CSV files (a header row is accepted too): ``*clicks*.csv|dat`` with
``session_id, timestamp, item_id, category`` and ``*buys*.csv|dat`` with ``session_id,
timestamp, item_id, price, quantity``. Every clicks row is a click and every buys row a
purchase, each an event of its own; category, price and quantity are not used. Timestamps
are ISO-8601 and ids integers. The buys file may be absent or empty (a clicks-only log).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.adapters.base import Adapter, constant, event_table
from recrl.pipelines.prepare.reading import CsvLayout

if TYPE_CHECKING:
    from recrl.pipelines.prepare.config import PrepareConfig

CLICKS = CsvLayout(
    columns=("session_id", "timestamp", "item_id", "category"),
    required=("session_id", "timestamp", "item_id"),
    header=None,
)
BUYS = CsvLayout(
    columns=("session_id", "timestamp", "item_id", "price", "quantity"),
    required=("session_id", "timestamp", "item_id"),
    header=None,
)


def to_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """Clicks file rows are ``click``, buys file rows ``purchase``."""
    event = schema.CLICK if role == "clicks" else schema.PURCHASE
    return event_table(
        table, table["session_id"], table["timestamp"], table["item_id"], constant(table, event)
    )


ADAPTER = Adapter(
    name="yoochoose",
    layouts={
        "clicks": (("*clicks*.csv", "*clicks*.dat", "*clicks*.csv.gz"), CLICKS),
        "buys": (("*buys*.csv", "*buys*.dat", "*buys*.csv.gz"), BUYS),
    },
    required_roles=("clicks",),
    to_events=to_events,
    timestamp_unit="iso",
    session_id_type="int",
    item_id_type="int",
    description="RecSys Challenge 2015: *clicks*.csv|dat and *buys*.csv|dat (header row optional)",
)
