"""Source adapters: each maps one public log format onto the design.md §1 input schema.

An adapter finds its files (`Adapter.find`) and turns a table of raw string columns into
the columns ``session_id, timestamp, item_id, event`` (`Adapter.to_events`), where
``event`` is ``click``, ``purchase``, ``excluded`` (a row the format defines but recrl drops
by design) or the raw value (later counted as ``invalid_event``). `parsing.parse_events`
does the rest.

One module per source (its layouts, its event mapping and its ``ADAPTER``); the shared
parts are in `base`. ``ADAPTERS`` below is the one list of sources: ``--source``, its
choices and help, and `PrepareConfig`'s check all read it. A new source is a new module
plus its line here.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from recrl.pipelines.prepare.adapters import (
    generic,
    movielens,
    open_bandit,
    retailrocket,
    yoochoose,
)
from recrl.pipelines.prepare.adapters.base import (
    SAMPLE_ROWS,
    Adapter,
    decide_timestamp_format,
    timestamp_format,
)
from recrl.pipelines.prepare.errors import MissingInputError
from recrl.pipelines.prepare.reading import SourceFile, list_files

if TYPE_CHECKING:
    from recrl.pipelines.prepare.config import PrepareConfig

__all__ = [
    "ADAPTERS",
    "SAMPLE_ROWS",
    "Adapter",
    "SourceFile",
    "decide_timestamp_format",
    "find_sources",
    "timestamp_format",
]

# The registry, in the order `recrl prepare --help` lists the sources.
ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        yoochoose.ADAPTER,
        retailrocket.ADAPTER,
        movielens.ADAPTER,
        open_bandit.ADAPTER,
        generic.ADAPTER,
    )
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
