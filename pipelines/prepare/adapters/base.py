"""What every source adapter shares: the `Adapter` record, the helpers that build its event
table, and the one timestamp format decided for a whole input.

A source module (one per public log format, beside this one) describes its files as
`CsvLayout`s, maps a table of their raw string columns onto ``session_id, timestamp,
item_id, event`` with `event_table`, and ends in ``ADAPTER = Adapter(...)``; the package's
``__init__`` registers it.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from recrl.pipelines.prepare import schema
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

if TYPE_CHECKING:
    # Only for annotations: config.py reads the source names from this package's registry,
    # so importing it here at run time would be a cycle.
    from recrl.pipelines.prepare.config import PrepareConfig

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


def event_table(table: pa.Table, session, timestamp, item, event) -> pa.Table:
    """The adapter's output: the four input-schema columns, plus the bookkeeping columns
    (file, line, drop reason, bad value) the reader attached, carried through unchanged."""
    columns = {
        schema.SESSION_ID: session,
        schema.TIMESTAMP: timestamp,
        schema.ITEM_ID: item,
        schema.EVENT: event,
    }
    for name in _BOOKKEEPING:
        columns[name] = table.column(name)
    return pa.table(columns)


def constant(table: pa.Table, value: str) -> pa.Array:
    """One value for every row (the event of a file whose rows are all of one kind)."""
    return pa.array([value] * table.num_rows, pa.string())


def map_values(column, mapping: dict[str, str]) -> pa.Array:
    """Replace raw values by mapping (case-insensitive); unknown values stay as they are."""
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    out = lowered
    for raw, mapped in mapping.items():
        out = pc.if_else(pc.equal(lowered, raw), mapped, out)
    return out


SAMPLE_ROWS = 10_000
"""Rows per file that decide an ``auto`` timestamp format (the first ones of each file)."""


def timestamp_format(
    adapter: Adapter, sources: list[SourceFile], config: PrepareConfig
) -> tuple[str, dict[str, int]]:
    """The one timestamp format of the whole input, and the sample's votes.

    ``--timestamp-unit`` wins; else a source with a fixed format keeps it
    (`Adapter.timestamp_unit`: RetailRocket's ms, MovieLens' s); else (``auto``) the first
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
        mapped = adapter.to_events(table, role, config)
        votes += timestamp_votes(mapped.column(schema.TIMESTAMP), config.time_range)
    decided = detect_timestamp_format(votes) if unit == "auto" else unit
    return decided, dict(sorted(votes.items()))
