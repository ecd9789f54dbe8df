"""``movielens``: the MovieLens rating logs (GroupLens), read as sessions of ratings.

Whichever of the three published layouts the input holds: ``u.data`` (100K; tab-separated
``user_id, item_id, rating, timestamp``, no header), ``ratings.dat`` (1M/10M; the same
fields separated by ``::``) or ``ratings.csv`` (20M/25M/32M; ``userId, movieId, rating,
timestamp`` with a header). There are no sessions, so a user is a session. Every rating is
a click; with ``movielens_positive_threshold`` set, a rating at or above it is a purchase
instead, and a rating that is not a number is an ``invalid_event``. Timestamps are epoch
seconds and ids integers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.adapters.base import Adapter, constant, event_table
from recrl.pipelines.prepare.reading import CsvLayout

if TYPE_CHECKING:
    from recrl.pipelines.prepare.config import PrepareConfig

U_DATA = CsvLayout(
    columns=("user_id", "item_id", "rating", "timestamp"),
    required=("user_id", "item_id", "rating", "timestamp"),
    delimiter="\t",
    header=False,
)
# The reader takes one-character delimiters: `::` is read as `:` with an empty field
# between each pair of values (the `_a`, `_b`, `_c` columns, never used).
RATINGS_DAT = CsvLayout(
    columns=("user_id", "_a", "item_id", "_b", "rating", "_c", "timestamp"),
    required=("user_id", "item_id", "rating", "timestamp"),
    delimiter=":",
    header=False,
)
RATINGS_CSV = CsvLayout(
    columns=("userId", "movieId", "rating", "timestamp"),
    required=("userId", "movieId", "rating", "timestamp"),
)


def to_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """User = session; every rating is a click, or a purchase when it is at least
    ``movielens_positive_threshold``. Unparsable ratings then count as invalid events."""
    user = table["userId"] if role == "ratings_csv" else table["user_id"]
    item = table["movieId"] if role == "ratings_csv" else table["item_id"]
    threshold = config.movielens_positive_threshold
    if threshold is None:
        event = constant(table, schema.CLICK)
    else:
        text = pc.utf8_trim_whitespace(table["rating"])
        numeric = pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)$")
        rating = pc.cast(pc.if_else(numeric, text, "nan"), pa.float64())
        positive = pc.if_else(pc.greater_equal(rating, threshold), schema.PURCHASE, schema.CLICK)
        # Not a click or purchase, so the parser counts it as `invalid_event` and keeps
        # the raw rating as the row's bad value.
        event = pc.if_else(numeric, positive, pc.binary_join_element_wise("rating=", text, ""))
    return event_table(table, user, table["timestamp"], item, event)


ADAPTER = Adapter(
    name="movielens",
    layouts={
        "u_data": (("u.data",), U_DATA),
        "ratings_dat": (("ratings.dat",), RATINGS_DAT),
        "ratings_csv": (("ratings.csv",), RATINGS_CSV),
    },
    # Any one of the three layouts will do; find_sources refuses an input with none.
    required_roles=(),
    to_events=to_events,
    timestamp_unit="s",
    session_id_type="int",
    item_id_type="int",
    description="MovieLens u.data (100K), ratings.dat (1M/10M) or ratings.csv (20M/25M/32M); "
    "every rating a click (see --movielens-positive-threshold)",
)
