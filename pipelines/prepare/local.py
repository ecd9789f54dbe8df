"""The parse stage of `recrl prepare` in one process, without Ray.

Tests, fuzzing and small tools call `parse_local`; it makes the same decisions as the Ray
pipeline (one timestamp format for the whole input, duplicates found across files), so
what it reports per drop reason is what `recrl prepare` reports before its cleaning
filters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from recrl.pipelines.prepare import schema, stages
from recrl.pipelines.prepare.adapters import (
    SAMPLE_ROWS,
    Adapter,
    decide_timestamp_format,
    find_sources,
)
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.parsing import parse_events
from recrl.pipelines.prepare.reading import SourceFile, read_local


@dataclass(frozen=True)
class LocalParse:
    adapter: Adapter
    sources: list[SourceFile]
    timestamp_format: str
    events: pa.Table
    """Every input row, parsed (`schema.PARSED_COLUMNS`), ordered by (file, line)."""

    def drops(self) -> Counter:
        """Rows per drop reason (bad values, excluded events, duplicates)."""
        codes = self.events.column(schema.DROP).to_numpy()
        found = Counter(codes[codes != schema.KEPT].tolist())
        return Counter({schema.DROP_REASONS[c]: n for c, n in found.items()})


def parse_block(table: pa.Table, adapter: Adapter, role: str, config, time_format: str):
    """Adapter mapping + `parse_events` of one block of one file."""
    return parse_events(
        adapter.to_events(table, role, config),
        timestamp_unit=time_format,
        session_id_type=adapter.session_id_type,
        item_id_type=adapter.item_id_type,
        years=tuple(config.time_range),
    )


def parse_local(config: PrepareConfig) -> LocalParse:
    """Find, read and parse every input file of ``config``, then mark duplicates.

    Each file is read once; its first `adapters.SAMPLE_ROWS` rows vote on the timestamp
    format as in the pipeline, and the blocks of one role are parsed together."""
    adapter, sources = find_sources(config)
    tables = [read_local([source], [index]) for index, source in enumerate(sources)]
    sampled: dict[str, list[pa.Table]] = {}
    for source, read in zip(sources, tables, strict=True):
        if read:
            sampled.setdefault(source.role, []).append(pa.concat_tables(read).slice(0, SAMPLE_ROWS))
    # Votes add up, so the samples of one role vote together: one call, not one per file.
    samples = [(table, role) for role, read in sampled.items() for table in _concatenated(read)]
    time_format, _ = decide_timestamp_format(adapter, samples, config)
    by_role: dict[str, list[pa.Table]] = {}
    for source, read in zip(sources, tables, strict=True):
        by_role.setdefault(source.role, []).extend(read)
    parsed = [
        parse_block(table, adapter, role, config, time_format)
        for role, read in by_role.items()
        for table in _concatenated(read)
    ]
    if not parsed:
        events = pa.table({c: pa.array([], pa.null()) for c in schema.PARSED_COLUMNS})
    else:
        events = pa.concat_tables(parsed)
        order = np.lexsort(
            (events.column(schema.LINE).to_numpy(), events.column(schema.FILE).to_numpy())
        )
        events = stages.mark_duplicates(events.take(pa.array(order)), keep=config.keep_duplicates)
    return LocalParse(adapter, sources, time_format, events)


def _concatenated(tables: list[pa.Table]) -> list[pa.Table]:
    """One table when the schemas agree (CSV files of a role), else the tables as they are
    (parquet files may type a column differently)."""
    if len(tables) < 2:
        return tables
    try:
        return [pa.concat_tables(tables)]
    except pa.ArrowInvalid:
        return tables
