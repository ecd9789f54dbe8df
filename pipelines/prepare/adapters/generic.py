"""``generic``: any log already in recrl's input schema (design.md §1.1), e.g. the output
of ``recrl generate``.

``*.parquet`` files with the columns ``session_id, timestamp, item_id, event``, or
``*.csv`` / ``*.csv.gz`` files with that header; other columns are ignored. ``event`` must
be ``click`` or ``purchase`` (any other value is an ``invalid_event``). Ids are taken as
strings, so ids of any kind work; the timestamp format (ISO-8601 or epoch s/ms/us/ns) is detected
from the first rows of every file unless ``--timestamp-unit`` gives it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from recrl.pipelines.prepare.adapters.base import Adapter, event_table
from recrl.pipelines.prepare.reading import CsvLayout

if TYPE_CHECKING:
    from recrl.pipelines.prepare.config import PrepareConfig

CSV = CsvLayout(
    columns=("session_id", "timestamp", "item_id", "event"),
    required=("session_id", "timestamp", "item_id", "event"),
)


def to_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """Already in the input schema: ``event`` must be ``click`` or ``purchase``."""
    return event_table(
        table, table["session_id"], table["timestamp"], table["item_id"], table["event"]
    )


ADAPTER = Adapter(
    name="generic",
    layouts={
        # A None layout: parquet, whose columns Adapter.find checks by name.
        "parquet": (("*.parquet",), None),
        "csv": (("*.csv", "*.csv.gz"), CSV),
    },
    required_roles=(),
    to_events=to_events,
    timestamp_unit="auto",
    session_id_type="str",
    item_id_type="str",
    description="*.parquet or *.csv with session_id,timestamp,item_id,event (click|purchase)",
)
