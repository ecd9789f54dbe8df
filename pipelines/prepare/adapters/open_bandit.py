"""``open_bandit``: the Open Bandit Dataset (ZOZOTOWN; Saito et al. 2021), one behaviour policy.

One CSV with a header per campaign, ``all.csv``, ``men.csv`` or ``women.csv``: an unnamed
row index, ``timestamp, item_id, position, click, propensity_score``, the four hashed
``user_feature_0..3`` and the user-item affinity columns. The log holds impressions and no user
id: the tuple of the four user features is the pseudo-session. A clicked impression is a
click; an impression without a click is ``excluded_event``. Timestamps are ISO-8601, item
ids integers, session ids strings. Propensities and positions are not read here: the
logged-bandit view for off-policy evaluation reads them separately (design.md §6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.adapters.base import Adapter, event_table, map_values
from recrl.pipelines.prepare.reading import CsvLayout

if TYPE_CHECKING:
    from recrl.pipelines.prepare.config import PrepareConfig

USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))
IMPRESSIONS = CsvLayout(
    columns=("", "timestamp", "item_id", "position", "click", "propensity_score"),
    required=(
        "timestamp",
        "item_id",
        "position",
        "click",
        "propensity_score",
        *USER_FEATURES,
    ),
)


def to_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """The Open Bandit Dataset logs impressions and has no user id: the tuple of the four
    hashed user features serves as a pseudo-session. A clicked impression is a ``click``;
    an impression without a click is ``excluded`` (counted), since a session's transitions
    are the items a user chose. The logged-bandit view (propensities, positions) for
    off-policy evaluation is read separately (design.md §6)."""
    session = pc.binary_join_element_wise(*[table[c] for c in USER_FEATURES], "|")
    event = map_values(table["click"], {"1": schema.CLICK, "0": schema.EXCLUDED})
    return event_table(table, session, table["timestamp"], table["item_id"], event)


ADAPTER = Adapter(
    name="open_bandit",
    layouts={"impressions": (("all.csv", "men.csv", "women.csv"), IMPRESSIONS)},
    required_roles=("impressions",),
    to_events=to_events,
    timestamp_unit="iso",
    session_id_type="str",
    item_id_type="int",
    description="Open Bandit Dataset all.csv|men.csv|women.csv of one behaviour policy: "
    "clicked impressions, session = user features",
)
