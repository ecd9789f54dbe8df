"""Source adapters: each maps one public log format onto the design.md §1 input schema.

An adapter finds its files (`find`) and turns a table of raw string columns into the
columns ``session_id, timestamp, item_id, event`` (`to_events`), where ``event`` is
``click``, ``purchase``, ``excluded`` (a row the format defines but recrl drops by design)
or the raw value (later counted as ``invalid_event``). `parsing.parse_events` does the rest.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import MissingInputError
from recrl.pipelines.prepare.parsing import (
    IdType,
    TimestampUnit,
    detect_timestamp_format,
    timestamp_votes,
)
from recrl.pipelines.prepare.reading import (
    CsvLayout,
    SourceFile,
    check_layout,
    check_parquet_columns,
    list_files,
    read_first_line,
    read_local,
)

logger = logging.getLogger(__name__)

_BOOKKEEPING = (schema.FILE, schema.LINE, schema.DROP, schema.BAD)
_PARQUET_COLUMNS = (schema.SESSION_ID, schema.TIMESTAMP, schema.ITEM_ID, schema.EVENT)
"""Parquet sources are already in the input schema."""


@dataclass(frozen=True)
class Adapter:
    """How to find and map the files of one source format."""

    name: str
    layouts: dict[str, tuple[tuple[str, ...], CsvLayout | None]]
    """role -> (file name patterns, layout); a None layout means parquet."""
    required_roles: tuple[str, ...]
    to_events: Callable[[pa.Table, str, PrepareConfig], pa.Table]
    timestamp_unit: TimestampUnit
    session_id_type: IdType
    item_id_type: IdType
    description: str
    """One line for ``recrl prepare --help``: the files it reads and how events map."""

    def find(self, input_path: str, encoding: str = "utf-8") -> list[SourceFile]:
        """Match the files at ``input_path`` to roles and check their header/columns.

        An empty text file of a role the source does not require (e.g. the buys file of a
        clicks-only YooChoose export) is skipped with a notice."""
        files = list_files(input_path)
        found: list[SourceFile] = []
        for role, (patterns, layout) in self.layouts.items():
            for info in files:
                name = posixpath.basename(info.path).lower()
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    if layout is None:
                        check_parquet_columns(info.path, _PARQUET_COLUMNS)
                    elif role not in self.required_roles and not read_first_line(
                        info.path, encoding
                    ).strip(" \t\r\n" + layout.delimiter):
                        logger.warning("%s is empty; going on without %s rows", info.path, role)
                        continue
                    has_header = (
                        True if layout is None else check_layout(info.path, layout, encoding)
                    )
                    found.append(
                        SourceFile(info.path, role, layout, has_header, info.size, encoding)
                    )
        missing = [r for r in self.required_roles if not any(f.role == r for f in found)]
        if missing:
            wanted = "; ".join(f"{role}: {' or '.join(self.layouts[role][0])}" for role in missing)
            seen = ", ".join(posixpath.basename(f.path) for f in files) or "no files"
            raise MissingInputError(
                f"no {self.name} input file for {wanted} (found: {seen})", file=input_path
            )
        return found


def _events(table: pa.Table, session, timestamp, item, event) -> pa.Table:
    columns = {
        schema.SESSION_ID: session,
        schema.TIMESTAMP: timestamp,
        schema.ITEM_ID: item,
        schema.EVENT: event,
    }
    for name in _BOOKKEEPING:
        columns[name] = table.column(name)
    return pa.table(columns)


def _constant(table: pa.Table, value: str) -> pa.Array:
    return pa.array([value] * table.num_rows, pa.string())


def _map_values(column, mapping: dict[str, str]) -> pa.Array:
    """Replace raw values by mapping (case-insensitive); unknown values stay as they are."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    out = lowered
    for raw, mapped in mapping.items():
        out = pc.if_else(pc.equal(lowered, raw), mapped, out)
    return out


# --- YooChoose / RecSys Challenge 2015 -------------------------------------------------

YOOCHOOSE_CLICKS = CsvLayout(
    columns=("session_id", "timestamp", "item_id", "category"),
    required=("session_id", "timestamp", "item_id"),
    header=None,
)
YOOCHOOSE_BUYS = CsvLayout(
    columns=("session_id", "timestamp", "item_id", "price", "quantity"),
    required=("session_id", "timestamp", "item_id"),
    header=None,
)


def yoochoose_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """Clicks file rows are ``click``, buys file rows ``purchase``."""
    event = schema.CLICK if role == "clicks" else schema.PURCHASE
    return _events(
        table, table["session_id"], table["timestamp"], table["item_id"], _constant(table, event)
    )


# --- RetailRocket -------------------------------------------------------------------

RETAILROCKET_EVENTS = CsvLayout(
    columns=("timestamp", "visitorid", "event", "itemid", "transactionid"),
    required=("timestamp", "visitorid", "event", "itemid"),
)


def retailrocket_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """Visitor = session; ``view`` → click; ``addtocart`` or ``transaction`` → purchase
    (``retailrocket_purchase``), the other of the two → excluded."""
    purchase = config.retailrocket_purchase
    other = "transaction" if purchase == "addtocart" else "addtocart"
    event = _map_values(
        table["event"], {"view": schema.CLICK, purchase: schema.PURCHASE, other: schema.EXCLUDED}
    )
    return _events(table, table["visitorid"], table["timestamp"], table["itemid"], event)


# --- MovieLens ----------------------------------------------------------------------

MOVIELENS_100K = CsvLayout(
    columns=("user_id", "item_id", "rating", "timestamp"),
    required=("user_id", "item_id", "rating", "timestamp"),
    delimiter="\t",
    header=False,
)
# `::` is read as `:` with an empty field between each pair of values.
MOVIELENS_1M = CsvLayout(
    columns=("user_id", "_a", "item_id", "_b", "rating", "_c", "timestamp"),
    required=("user_id", "item_id", "rating", "timestamp"),
    delimiter=":",
    header=False,
)
MOVIELENS_CSV = CsvLayout(
    columns=("userId", "movieId", "rating", "timestamp"),
    required=("userId", "movieId", "rating", "timestamp"),
)


def movielens_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """User = session; every rating is a click, or a purchase when it is at least
    ``movielens_positive_threshold``. Unparsable ratings then count as invalid events."""
    user = table["userId"] if role == "ratings_csv" else table["user_id"]
    item = table["movieId"] if role == "ratings_csv" else table["item_id"]
    threshold = config.movielens_positive_threshold
    if threshold is None:
        event = _constant(table, schema.CLICK)
    else:
        text = pc.utf8_trim_whitespace(table["rating"])
        numeric = pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)$")
        rating = pc.cast(pc.if_else(numeric, text, "nan"), pa.float64())
        positive = pc.if_else(pc.greater_equal(rating, threshold), schema.PURCHASE, schema.CLICK)
        event = pc.if_else(numeric, positive, pc.binary_join_element_wise("rating=", text, ""))
    return _events(table, user, table["timestamp"], item, event)


# --- Open Bandit Dataset ------------------------------------------------------------

OPEN_BANDIT_USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))
OPEN_BANDIT = CsvLayout(
    columns=("", "timestamp", "item_id", "position", "click", "propensity_score"),
    required=(
        "timestamp",
        "item_id",
        "position",
        "click",
        "propensity_score",
        *OPEN_BANDIT_USER_FEATURES,
    ),
)


def open_bandit_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """The Open Bandit Dataset logs impressions and has no user id: the tuple of the four
    hashed user features serves as a pseudo-session. A clicked impression is a ``click``;
    an impression without a click is ``excluded`` (counted), since a session's transitions
    are the items a user chose. The logged-bandit view (propensities, positions) for
    off-policy evaluation is read separately (design.md §6)."""
    session = pc.binary_join_element_wise(*[table[c] for c in OPEN_BANDIT_USER_FEATURES], "|")
    event = _map_values(table["click"], {"1": schema.CLICK, "0": schema.EXCLUDED})
    return _events(table, session, table["timestamp"], table["item_id"], event)


# --- Generic input schema -----------------------------------------------------------

GENERIC_CSV = CsvLayout(
    columns=("session_id", "timestamp", "item_id", "event"),
    required=("session_id", "timestamp", "item_id", "event"),
)


def generic_events(table: pa.Table, role: str, config: PrepareConfig) -> pa.Table:
    """Already in the input schema: ``event`` must be ``click`` or ``purchase``."""
    return _events(table, table["session_id"], table["timestamp"], table["item_id"], table["event"])


ADAPTERS: dict[str, Adapter] = {
    "yoochoose": Adapter(
        "yoochoose",
        {
            "clicks": (("*clicks*.csv", "*clicks*.dat", "*clicks*.csv.gz"), YOOCHOOSE_CLICKS),
            "buys": (("*buys*.csv", "*buys*.dat", "*buys*.csv.gz"), YOOCHOOSE_BUYS),
        },
        ("clicks",),
        yoochoose_events,
        "iso",
        "int",
        "int",
        "RecSys Challenge 2015: *clicks*.csv|dat and *buys*.csv|dat (header row optional)",
    ),
    "retailrocket": Adapter(
        "retailrocket",
        {"events": (("events.csv", "events.csv.gz"), RETAILROCKET_EVENTS)},
        ("events",),
        retailrocket_events,
        "ms",
        "int",
        "int",
        "RetailRocket events.csv: view -> click, addtocart -> purchase, transaction dropped "
        "(or the other way round: see --retailrocket-purchase)",
    ),
    "movielens": Adapter(
        "movielens",
        {
            "u_data": (("u.data",), MOVIELENS_100K),
            "ratings_dat": (("ratings.dat",), MOVIELENS_1M),
            "ratings_csv": (("ratings.csv",), MOVIELENS_CSV),
        },
        (),
        movielens_events,
        "s",
        "int",
        "int",
        "MovieLens u.data (100K), ratings.dat (1M/10M) or ratings.csv (20M/25M/32M); every "
        "rating a click (see --movielens-positive-threshold)",
    ),
    "open_bandit": Adapter(
        "open_bandit",
        {"impressions": (("all.csv", "men.csv", "women.csv"), OPEN_BANDIT)},
        ("impressions",),
        open_bandit_events,
        "iso",
        "str",
        "int",
        "Open Bandit Dataset all.csv|men.csv|women.csv of one behaviour policy: clicked "
        "impressions, session = user features",
    ),
    "generic": Adapter(
        "generic",
        {
            "parquet": (("*.parquet",), None),
            "csv": (("*.csv", "*.csv.gz"), GENERIC_CSV),
        },
        (),
        generic_events,
        "auto",
        "str",
        "str",
        "*.parquet or *.csv with session_id,timestamp,item_id,event (click|purchase)",
    ),
}


def find_sources(config: PrepareConfig) -> tuple[Adapter, list[SourceFile]]:
    """The adapter of ``config.source`` and its input files (errors name what is missing)."""
    adapter = ADAPTERS[config.source]
    sources = adapter.find(config.input_path, config.encoding)
    if not sources:
        patterns = sorted({p for pats, _ in adapter.layouts.values() for p in pats})
        seen = ", ".join(posixpath.basename(f.path) for f in list_files(config.input_path))
        raise MissingInputError(
            f"no {adapter.name} input files (looked for {', '.join(patterns)}; "
            f"found: {seen or 'no files'})",
            file=config.input_path,
        )
    return adapter, sources


SAMPLE_ROWS = 10_000
"""Rows per file that decide an ``auto`` timestamp format (the first ones of each file)."""


def timestamp_format(
    adapter: Adapter, sources: list[SourceFile], config: PrepareConfig
) -> tuple[str, dict[str, int]]:
    """The one timestamp format of the whole input, and the sample's votes.

    ``--timestamp-unit`` wins; else a source with a fixed format keeps it (YooChoose and
    Open Bandit ISO-8601, RetailRocket ms, MovieLens s); else (``auto``) the first
    `SAMPLE_ROWS` rows of every file vote (`parsing.timestamp_votes`) and the format most
    values fit is the column's, for every file and block. Deterministic: the same files
    give the same decision.
    """
    # The sample is read for every source: it also finds a file that is not in its
    # encoding before any Ray work starts, and meta.json records its votes.
    samples = [
        (table, source.role)
        for index, source in enumerate(sources)
        for table in read_local([source], [index], max_rows=SAMPLE_ROWS)
    ]
    return decide_timestamp_format(adapter, samples, config)


def decide_timestamp_format(
    adapter: Adapter, samples: list[tuple[pa.Table, str]], config: PrepareConfig
) -> tuple[str, dict[str, int]]:
    """`timestamp_format` from already read (table, role) samples of each file."""
    unit = config.timestamp_unit or adapter.timestamp_unit
    votes: Counter = Counter()
    for table, role in samples:
        events = adapter.to_events(table, role, config)
        votes += timestamp_votes(events.column(schema.TIMESTAMP), config.time_range)
    decided = detect_timestamp_format(votes) if unit == "auto" else unit
    return decided, dict(sorted(votes.items()))
