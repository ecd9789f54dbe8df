"""`recrl prepare` on Ray Data: raw session logs → transitions parquet + meta.json.

Stages (SPEC §1), each over blocks, never a Python loop per row or per session:

1. read every file with line numbers and parse it (`map_batches`), then count rows per
   drop reason and the valid items;
2. drop bad and rare-item rows, encode items provisionally, hash-partition by session and
   build the windows of whole sessions, dropping sessions with too few clicks;
3. encode items finally, split sessions, write ``train/``, ``val/``, ``test/``.

Blocks are counted by small Ray tasks over the materialised blocks, so the driver only
ever holds per-item and per-session summaries, not the events.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa

from models import batch as cols
from pipelines.prepare import schema, stages
from pipelines.prepare.adapters import Adapter, find_sources
from pipelines.prepare.config import PrepareConfig
from pipelines.prepare.errors import (
    EmptyDatasetError,
    InvalidValuesError,
)
from pipelines.prepare.meta import (
    FORMAT_VERSION,
    RowAccounting,
    describe_sources,
    fingerprint,
    write_meta,
)
from pipelines.prepare.output import (
    check_output,
    counts_for,
    write_items,
    write_sessions,
    write_splits,
)
from pipelines.prepare.parsing import parse_events
from pipelines.prepare.reading import SourceFile
from pipelines.prepare.shuffle import hash_shuffle
from pipelines.prepare.split import SPLITS, assign_splits
from pipelines.ray_runtime import ensure_ray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareResult:
    output_path: str
    meta: dict[str, Any]
    reused: bool
    """True when the folder already held this exact dataset and nothing was recomputed."""


def prepare(config: PrepareConfig) -> PrepareResult:
    """Run the whole pipeline; see the module docstring."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    adapter, sources = find_sources(config)
    source_info = describe_sources(sources)
    settings = _jsonable(config.fingerprint_fields())
    dataset_id = fingerprint(settings, source_info)
    existing = check_output(config, dataset_id, settings)
    if existing is not None:
        logger.info("%s already holds this dataset; nothing to do", config.output_path)
        return PrepareResult(config.output_path, existing, reused=True)
    timings["inspect"] = _lap(clock)

    ensure_ray()
    clock = time.perf_counter()
    logger.info("reading and parsing %d file(s) of %s", len(sources), adapter.name)
    parsed = _read_and_parse(adapter, sources, config).materialize()
    stats = _reduce_blocks(parsed, stages.parsed_stats)
    if stats is None:
        raise EmptyDatasetError("the input files hold no data rows", file=config.input_path)
    drops = dict(stats.drops)
    _check_invalid_values(stats, sources, config)
    valid_rows = stats.rows - sum(drops.values())
    if valid_rows == 0:
        raise EmptyDatasetError(
            f"no valid row left after parsing {stats.rows} rows ({_describe_drops(drops)})",
            file=config.input_path,
        )
    rare_items = None
    if config.min_item_count > 0:
        rare_items = stats.item_ids[stats.item_counts <= config.min_item_count]
        # Session totals must not count the rows the item filter removes.
        stats.sessions = _reduce_blocks(parsed, stages.parsed_stats, rare_items).sessions
    drops["rare_item"] = (
        0
        if rare_items is None
        else int(stats.item_counts[np.isin(stats.item_ids, rare_items)].sum())
    )
    if drops["rare_item"] == valid_rows:
        raise EmptyDatasetError(
            f"the item filter (min_item_count={config.min_item_count}: drop items with at most "
            f"that many events) removed all {valid_rows} valid rows",
            file=config.input_path,
        )
    timings["parse"] = _lap(clock)

    clock = time.perf_counter()
    sessions = stats.sessions
    keep = sessions.clicks > config.min_session_clicks
    drops["short_session"] = int(sessions.events[~keep].sum())
    if not keep.any():
        raise EmptyDatasetError(
            f"the session filter (keep sessions with more than {config.min_session_clicks} "
            f"clicks) removed all {len(keep)} sessions ({int(sessions.events.sum())} rows); "
            "lower --min-session-clicks if sessions in this source are short",
            file=config.input_path,
        )
    kept = stages.KeptSessions(
        session_ids=sessions.ids[keep],
        session_splits=assign_splits(
            sessions.ids[keep],
            sessions.start[keep],
            method=config.split,
            fractions=config.split_fractions,
            seed=config.seed,
        ),
        rare_items=rare_items,
    )
    per_split = _reduce_blocks(
        parsed, stages.kept_item_counts, kept, merge=stages.merge_item_counts
    )
    items = reduce(np.union1d, (per_split[c][0] for c in per_split))
    n_items = len(items)
    timings["encode"] = _lap(clock)

    clock = time.perf_counter()
    num_partitions = config.num_partitions or _default_partitions(stats.rows)
    logger.info(
        "building windows of %d sessions (%d partitions)", len(kept.session_ids), num_partitions
    )
    grouped = hash_shuffle(
        parsed,
        key=cols.SESSION_ID,
        num_partitions=num_partitions,
        map_fn=stages.tag_kept_events,
        map_kwargs={"kept": kept, "items": items},
    )
    transitions = grouped.map_batches(
        stages.session_transitions,
        fn_kwargs={
            "state_len": config.state_len,
            "pad_id": n_items,
            "r_click": config.r_click,
            "r_buy": config.r_buy,
        },
        batch_format="pyarrow",
        batch_size=None,
    ).materialize()
    kept_rows = transitions.count()
    timings["windows"] = _lap(clock)

    clock = time.perf_counter()
    shard_files = write_splits(transitions, config)
    item_counts = {c: counts_for(items, *per_split[c][:2]) for c in per_split}
    write_items(config.output_path, items, item_counts)
    write_sessions(config.output_path, kept, sessions, keep)
    timings["write"] = _lap(clock)

    accounting = RowAccounting(stats.rows, kept_rows, drops)
    accounting.check()
    outcome = _Outcome(stats, accounting, kept, items, per_split, item_counts, shard_files)
    meta = _build_meta(config, settings, dataset_id, source_info, outcome, timings)
    write_meta(config.output_path, meta)
    logger.info("wrote %d transitions of %d items to %s", kept_rows, n_items, config.output_path)
    return PrepareResult(config.output_path, meta, reused=False)


# --- stages -------------------------------------------------------------------------


def _read_and_parse(adapter: Adapter, sources: list[SourceFile], config: PrepareConfig):
    import ray.data

    from pipelines.prepare.datasource import NumberedFileDatasource

    datasource = NumberedFileDatasource(sources, range(len(sources)))
    return ray.data.read_datasource(datasource).map_batches(
        _parse_block,
        fn_kwargs={"adapter": adapter, "roles": [s.role for s in sources], "config": config},
        batch_format="pyarrow",
        batch_size=None,
    )


def _parse_block(table: pa.Table, *, adapter: Adapter, roles: list[str], config):
    """Parse one block; a block comes from one file, whose role decides its mapping."""
    files = np.unique(table.column(schema.FILE).to_numpy())
    if len(files) == 0:
        return _empty_parsed(adapter)
    if len(files) != 1:
        raise AssertionError(f"a read block mixes rows of files {files.tolist()}")
    events = adapter.to_events(table, roles[int(files[0])], config)
    return parse_events(
        events,
        timestamp_unit=adapter.timestamp_unit,
        session_id_type=adapter.session_id_type,
        item_id_type=adapter.item_id_type,
    )


def _empty_parsed(adapter: Adapter) -> pa.Table:
    def id_type(kind: str) -> pa.DataType:
        return pa.int64() if kind == "int" else pa.string()

    return pa.schema(
        [
            (schema.SESSION_ID, id_type(adapter.session_id_type)),
            (schema.TIMESTAMP, pa.int64()),
            (schema.ITEM_ID, id_type(adapter.item_id_type)),
            (schema.IS_BUY, pa.bool_()),
            (schema.DROP, pa.uint8()),
            (schema.FILE, pa.int32()),
            (schema.LINE, pa.int64()),
            (schema.BAD, pa.string()),
        ]
    ).empty_table()


def _reduce_blocks(dataset, block_fn, *args, merge=None):
    """Apply ``block_fn`` to every block with a Ray task and merge the results."""
    import ray

    @ray.remote
    def apply(table: pa.Table):
        return block_fn(table, *args) if table.num_rows else None

    results = [r for r in ray.get([apply.remote(ref) for ref in dataset.to_arrow_refs()]) if r]
    if not results:
        return None
    return reduce(merge or (lambda a, b: a.merge(b)), results)


# --- checks -------------------------------------------------------------------------


def _check_invalid_values(stats, sources: list[SourceFile], config: PrepareConfig) -> None:
    for reason in schema.INVALID_REASONS:
        count = stats.drops.get(reason, 0)
        if count == 0:
            continue
        file_index, line, raw = stats.examples[reason]
        fraction = count / max(stats.rows, 1)
        message = (
            f"{count} of {stats.rows} rows ({fraction:.2%}) dropped as {reason}; "
            f"first here: {raw!r}"
        )
        column = schema.REASON_COLUMN[reason]
        file = sources[file_index].path
        if fraction > config.max_invalid_fraction:
            raise InvalidValuesError(
                f"{message}. That is more than max_invalid_fraction="
                f"{config.max_invalid_fraction}; fix the input or raise the limit "
                "(--max-invalid-fraction)",
                file=file,
                line=line,
                column=column,
            )
        logger.warning("%s:%s column %s: %s", file, line, column, message)


# --- meta -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What a run computed, for meta.json."""

    stats: stages.ParsedStats
    accounting: RowAccounting
    kept: stages.KeptSessions
    items: np.ndarray
    per_split: dict
    item_counts: dict
    shard_files: dict


def _build_meta(config, settings, dataset_id, source_info, outcome: _Outcome, timings):
    stats, kept, per_split = outcome.stats, outcome.kept, outcome.per_split
    item_counts, shard_files, n_items = outcome.item_counts, outcome.shard_files, len(outcome.items)
    split_info = {}
    for code, name in enumerate(SPLITS):
        transitions = int(per_split[code][1].sum())
        purchases = per_split[code][2]
        split_info[name] = {
            "sessions": int(np.count_nonzero(kept.session_splits == code)),
            "transitions": transitions,
            "purchases": purchases,
            "clicks": transitions - purchases,
            "files": shard_files[name],
        }
    examples = {
        reason: {"file": source_info[f]["path"], "line": line, "value": raw}
        for reason, (f, line, raw) in sorted(stats.examples.items())
    }
    return {
        "format_version": FORMAT_VERSION,
        "dataset_id": dataset_id,
        "source": config.source,
        "n_items": n_items,
        "pad_id": n_items,
        "L": config.state_len,
        "rewards": {"r_click": config.r_click, "r_buy": config.r_buy},
        "columns": list(cols.TRANSITION_COLUMNS),
        "splits": split_info,
        "rows": outcome.accounting.as_dict(),
        "drop_examples": examples,
        "item_counts": sum(item_counts.values()).tolist(),
        "item_counts_train": item_counts[0].tolist(),
        "sources": source_info,
        "settings": settings,
        "extra": dict(config.extra_metadata),
        "timing_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _describe_drops(drops: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(drops.items()) if v) or "no rows"


def _default_partitions(rows: int) -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(2 * cpus, math.ceil(rows / 1_000_000))


def _jsonable(settings: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}


def _lap(start: float) -> float:
    return time.perf_counter() - start


__all__ = ["PrepareResult", "prepare"]
