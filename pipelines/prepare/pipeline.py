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
import posixpath
import time
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models import batch as cols
from pipelines.prepare import schema, stages
from pipelines.prepare.adapters import Adapter, find_sources
from pipelines.prepare.config import PrepareConfig
from pipelines.prepare.errors import (
    EmptyDatasetError,
    InvalidValuesError,
    OutputExistsError,
)
from pipelines.prepare.meta import (
    FORMAT_VERSION,
    META_FILE,
    RowAccounting,
    describe_sources,
    fingerprint,
    read_meta,
    write_meta,
)
from pipelines.prepare.parsing import parse_events
from pipelines.prepare.reading import SourceFile, resolve_filesystem
from pipelines.prepare.shuffle import hash_shuffle
from pipelines.prepare.split import SPLITS, assign_splits
from pipelines.ray_runtime import ensure_ray

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.parquet"
SESSIONS_FILE = "sessions.parquet"
OUTPUT_ENTRIES = (*SPLITS, ITEMS_FILE, SESSIONS_FILE, META_FILE)
"""Everything `prepare` writes; with ``overwrite`` only these are removed."""


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
    existing = _check_output(config, dataset_id, settings)
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
    shard_files = _write_splits(transitions, config)
    item_counts = {c: _counts_for(items, *per_split[c][:2]) for c in per_split}
    _write_items(config.output_path, items, item_counts)
    _write_sessions(config.output_path, kept, sessions, keep)
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


def _write_splits(transitions, config: PrepareConfig) -> dict[str, list[str]]:
    """Write each split's rows as parquet shards (one Ray task per block).

    Writing all three splits from one pass over the blocks costs one round of tasks
    instead of three Ray Data executions with their fixed overhead each.
    """
    import ray

    fs, local = resolve_filesystem(config.output_path)
    for name in SPLITS:
        fs.create_dir(posixpath.join(local, name), recursive=True)

    @ray.remote
    def write_block(table: pa.Table, block: int) -> dict[str, list[str]]:
        written: dict[str, list[str]] = {name: [] for name in SPLITS}
        for code, name in enumerate(SPLITS):
            part = stages.select_split(table, code=code)
            for shard, start in enumerate(range(0, part.num_rows, config.rows_per_shard)):
                file = f"{name}/part-{block:05d}-{shard:03d}.parquet"
                chunk = part.slice(start, config.rows_per_shard)
                pq.write_table(chunk, posixpath.join(local, file), filesystem=fs)
                written[name].append(file)
        return written

    refs = transitions.to_arrow_refs()
    results = ray.get([write_block.remote(ref, i) for i, ref in enumerate(refs)])
    return {name: sorted(f for r in results for f in r[name]) for name in SPLITS}


def _counts_for(items: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Counts indexed by encoded item id (``ids`` is a sorted subset of ``items``)."""
    out = np.zeros(len(items), dtype=np.int64)
    out[np.searchsorted(items, ids)] = counts
    return out


def _write_items(output_path: str, items: np.ndarray, item_counts: dict) -> None:
    table = pa.table(
        {
            cols.ACTION: pa.array(np.arange(len(items), dtype=np.int32)),
            "raw_item_id": pa.array(items),
            "count": pa.array(sum(item_counts.values())),
            "count_train": pa.array(item_counts[0]),
        }
    )
    fs, local = resolve_filesystem(output_path)
    pq.write_table(table, posixpath.join(local, ITEMS_FILE), filesystem=fs)


def _write_sessions(output_path, kept: stages.KeptSessions, sessions, keep) -> None:
    table = pa.table(
        {
            cols.SESSION_ID: pa.array(np.arange(len(kept.session_ids), dtype=np.int64)),
            "raw_session_id": pa.array(kept.session_ids),
            "split": pa.array(np.asarray(SPLITS)[kept.session_splits]),
            "start_ns": pa.array(sessions.start[keep]),
            "events": pa.array(sessions.events[keep]),
        }
    )
    fs, local = resolve_filesystem(output_path)
    pq.write_table(table, posixpath.join(local, SESSIONS_FILE), filesystem=fs)


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


def _check_output(config: PrepareConfig, dataset_id: str, settings: dict) -> dict | None:
    """Return the existing meta when the folder already holds this dataset; refuse a
    different one unless ``overwrite``; never delete files `prepare` did not write."""
    fs, local = resolve_filesystem(config.output_path)
    info = fs.get_file_info(local)
    if info.type == pafs.FileType.NotFound:
        fs.create_dir(local, recursive=True)
        return None
    if info.type != pafs.FileType.Directory:
        raise OutputExistsError("output path exists and is not a folder", file=local)
    entries = fs.get_file_info(pafs.FileSelector(local))
    names = {posixpath.basename(e.path) for e in entries}
    if not names:
        return None
    foreign = sorted(names - set(OUTPUT_ENTRIES))
    if foreign:
        raise OutputExistsError(
            f"output folder holds files recrl did not write ({', '.join(foreign[:5])}); "
            "choose an empty or new folder",
            file=local,
        )
    if META_FILE in names:
        meta = read_meta(config.output_path)
        if meta.get("dataset_id") == dataset_id and not config.overwrite:
            return meta
        if not config.overwrite:
            changed = _differences(meta.get("settings", {}), settings)
            raise OutputExistsError(
                f"output folder holds a different dataset (changed: {changed}); pass "
                "--overwrite to replace it or choose another folder",
                file=local,
            )
    elif not config.overwrite:
        raise OutputExistsError(
            "output folder holds an incomplete dataset (no meta.json, an earlier run "
            "stopped); pass --overwrite to replace it",
            file=local,
        )
    for entry in entries:
        if entry.type == pafs.FileType.Directory:
            fs.delete_dir(entry.path)
        else:
            fs.delete_file(entry.path)
    return None


def _differences(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed) or "the input files"


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
