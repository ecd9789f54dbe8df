"""``retailrocket``: the RetailRocket e-commerce event log (Kaggle), as used by SQN/SA2C.

One CSV with a header, ``events.csv`` (or ``events.csv.gz``): ``timestamp, visitorid,
event, itemid, transactionid``. There are no sessions in the log, so a visitor is a
session. ``view`` is a click; of ``addtocart`` and ``transaction`` one is the purchase
(``retailrocket_purchase``, by default ``addtocart``, the SQN/SA2C convention) and the other
is ``excluded_event``. Timestamps are epoch milliseconds and ids integers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.adapters.base import Adapter, event_table, map_values
from recrl.pipelines.prepare.reading import CsvLayout

if TYPE_CHECKING:
    from recrl.pipelines.prepare.config import PrepareConfig

EVENTS = CsvLayout(
    columns=("timestamp", "visitorid", "event", "itemid", "transactionid"),
    required=("timestamp", "visitorid", "event", "itemid"),
)


def to_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """Visitor = session; ``view`` → click; ``addtocart`` or ``transaction`` → purchase
    (``retailrocket_purchase``), the other of the two → excluded."""
    purchase = config.retailrocket_purchase
    other = "transaction" if purchase == "addtocart" else "addtocart"
    event = map_values(
        table["event"], {"view": schema.CLICK, purchase: schema.PURCHASE, other: schema.EXCLUDED}
    )
    return event_table(table, table["visitorid"], table["timestamp"], table["itemid"], event)


ADAPTER = Adapter(
    name="retailrocket",
    layouts={"events": (("events.csv", "events.csv.gz"), EVENTS)},
    required_roles=("events",),
    to_events=to_events,
    timestamp_unit="ms",
    session_id_type="int",
    item_id_type="int",
    description="RetailRocket events.csv: view -> click, addtocart -> purchase, transaction "
    "dropped (or the other way round: see --retailrocket-purchase)",
)
