"""`recrl prepare` on Ray Data: raw session logs → transitions parquet + meta.json.

Stages (design.md §1), each over blocks, never a Python loop per row or per session:

1. read every file with line numbers and parse it (`map_batches`), then count rows per
   drop reason and the valid items;
2. drop bad and rare-item rows, encode items provisionally, hash-partition by session and
   build the windows of whole sessions, dropping sessions with too few clicks;
3. encode items finally, split sessions, write ``train/``, ``val/``, ``test/``.

Blocks are counted by small Ray tasks over the materialised blocks, so the driver only
ever holds per-item and per-session summaries, not the events.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

import numpy as np
import pyarrow as pa
from recrl.models import batch as cols
from recrl.pipelines.atomic_output import staged_output
from recrl.pipelines.prepare import schema, stages
from recrl.pipelines.prepare.adapters import Adapter, find_sources, timestamp_format
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import (
    DataError,
    EmptyDatasetError,
    InvalidValuesError,
)
from recrl.pipelines.prepare.local import parse_block
from recrl.pipelines.prepare.manifest import SHARDS, build_manifest
from recrl.pipelines.prepare.meta import (
    FORMAT_VERSION,
    RowAccounting,
    describe_sources,
    fingerprint,
    write_meta,
)
from recrl.pipelines.prepare.output import (
    check_output,
    counts_for,
    write_items,
    write_sessions,
    write_splits,
    written,
)
from recrl.pipelines.prepare.reading import SourceFile
from recrl.pipelines.prepare.shuffle import hash_shuffle
from recrl.pipelines.prepare.split import SPLITS, assign_splits, split_sizes
from recrl.pipelines.ray_runtime import ensure_ray

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
    # Built in a staging sibling, swapped in when complete: a failure or ctrl-C leaves
    # the old folder as it was. Created now, so a bad output location fails before Ray.
    with staged_output(config.output_path, ours=written) as staging:
        built = replace(config, output_path=staging)
        meta = _build(built, adapter, sources, settings, dataset_id, source_info, timings, clock)
        meta[SHARDS] = build_manifest(staging)
        write_meta(staging, meta)  # last: meta.json marks the dataset complete
    logger.info(
        "wrote %d transitions of %d items to %s",
        meta["rows"]["kept"],
        meta["n_items"],
        config.output_path,
    )
    return PrepareResult(config.output_path, meta, reused=False)


def _build(config, adapter, sources, settings, dataset_id, source_info, timings, clock) -> dict:
    """Read, clean, encode, split and write into ``config.output_path`` (the staging
    folder); returns meta.json's contents, not yet written."""
    time_format, time_votes = timestamp_format(adapter, sources, config)
    timings["inspect"] = _lap(clock)

    ensure_ray()
    clock = time.perf_counter()
    logger.info(
        "reading and parsing %d file(s) of %s (timestamps: %s)",
        len(sources),
        adapter.name,
        time_format,
    )
    with _errors_of_tasks():
        parsed = _read_and_parse(adapter, sources, config, time_format).materialize()
    num_partitions = config.num_partitions or _default_partitions(parsed.count())
    # only the shuffle holds the parsed blocks from here, so each is freed once mapped
    block_refs = parsed.to_arrow_refs()
    del parsed
    parsed, stats = _group_sessions(block_refs, config, num_partitions)
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
        stats.sessions = _reduce_blocks(parsed, stages.valid_sessions, rare_items)
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
    _check_enough_sessions(int(np.count_nonzero(keep)), config)
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
    logger.info(
        "building and writing the windows of %d sessions (%d partitions)",
        len(kept.session_ids), num_partitions,
    )  # fmt: skip
    # `parsed` is already grouped by session (`_group_sessions`): no second shuffle. Each
    # block's windows are built and written by one task, never materialised together.
    shard_files, kept_rows = write_splits(
        parsed, config,
        functools.partial(
            _block_transitions, kept=kept, items=items, state_len=config.state_len,
            pad_id=n_items, r_click=config.r_click, r_buy=config.r_buy,
        ),
    )  # fmt: skip
    timings["windows_and_write"] = _lap(clock)

    clock = time.perf_counter()
    item_counts = {c: counts_for(items, *per_split[c][:2]) for c in per_split}
    write_items(config.output_path, items, item_counts)
    write_sessions(config.output_path, kept, sessions, keep)
    timings["write"] = _lap(clock)

    accounting = RowAccounting(stats.rows, kept_rows, drops)
    accounting.check()
    outcome = _Outcome(stats, accounting, kept, items, per_split, item_counts, shard_files)
    meta = _build_meta(config, settings, dataset_id, source_info, outcome, timings)
    meta["timestamp_format"] = {"format": time_format, "sample_votes": time_votes}
    return meta


# --- stages -------------------------------------------------------------------------


def _block_transitions(table: pa.Table, *, kept, items, **windows) -> pa.Table:
    """The transitions of one block of whole sessions: its kept events, encoded
    (`stages.tag_kept_events`), then their windows (`stages.session_transitions`)."""
    return stages.session_transitions(stages.tag_kept_events(table, kept=kept, items=items),
                                      **windows)  # fmt: skip


def _read_and_parse(
    adapter: Adapter, sources: list[SourceFile], config: PrepareConfig, time_format: str
):
    from recrl.pipelines.prepare.datasource import read_sources

    return read_sources(sources).map_batches(
        _parse_block,
        fn_kwargs={
            "adapter": adapter,
            "roles": [s.role for s in sources],
            "config": config,
            "time_format": time_format,
        },
        batch_format="pyarrow",
        batch_size=None,
    )


def _parse_block(table: pa.Table, *, adapter: Adapter, roles: list[str], config, time_format: str):
    """Parse one block; a block comes from one file, whose role decides its mapping.
    ``time_format`` was decided once for the whole input (`adapters.timestamp_format`)."""
    files = np.unique(table.column(schema.FILE).to_numpy())
    if len(files) == 0:
        return _empty_parsed(adapter)
    if len(files) != 1:
        raise AssertionError(f"a read block mixes rows of files {files.tolist()}")
    return parse_block(table, adapter, roles[int(files[0])], config, time_format)


def _group_sessions(block_refs: list, config: PrepareConfig, num_partitions: int):
    """Regroup the parsed rows so each block holds every row of its sessions, mark exact
    duplicate events there (found across blocks and files) and count every block's rows per
    drop reason, in the shuffle's reduce tasks (`stages.dedup_and_count`). Returns the
    session blocks (materialised, valid rows only) and the merged `ParsedStats` (None when
    there are no rows); ``block_refs`` is emptied (`hash_shuffle`)."""
    import ray

    grouped, stats_refs = hash_shuffle(
        block_refs,
        key=stages.PARTITION_KEY,
        num_partitions=num_partitions,
        map_fn=stages.with_session_key,
        map_kwargs={},
        reduce_fn=stages.dedup_and_count,
        reduce_kwargs={"keep": config.keep_duplicates},
    )
    counted = [s for s in ray.get(stats_refs) if s.rows]
    return grouped, reduce(lambda a, b: a.merge(b), counted) if counted else None


@contextlib.contextmanager
def _errors_of_tasks():
    """Re-raise a `DataError` raised inside a Ray task as itself (one line, no task
    traceback), e.g. a file that is not valid UTF-8 found by a read task."""
    try:
        yield
    except Exception as error:
        cause: BaseException | None = error
        for _ in range(10):
            if cause is None:
                break
            inner = getattr(cause, "cause", None)
            if isinstance(cause, DataError) and not isinstance(inner, BaseException):
                raise DataError(
                    cause.message, file=cause.file, line=cause.line, column=cause.column
                ) from None
            cause = inner if isinstance(inner, BaseException) else cause.__cause__
        raise


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
    def apply(table: pa.Table, args: tuple):
        return block_fn(table, *args) if table.num_rows else None

    # the arguments (kept sessions: tens of MB at 34M rows) go to the object store once,
    # not into the task's definition (which Ray pickles and exports with the function)
    args_ref = ray.put(args)
    refs = [apply.remote(ref, args_ref) for ref in dataset.to_arrow_refs()]
    results = [r for r in ray.get(refs) if r]
    if not results:
        return None
    return reduce(merge or (lambda a, b: a.merge(b)), results)


# --- checks -------------------------------------------------------------------------


def _check_enough_sessions(n_sessions: int, config: PrepareConfig) -> None:
    """Every split with a positive fraction needs a session; say so, not a KeyError."""
    sizes = split_sizes(n_sessions, config.split_fractions)
    empty = [
        name
        for name, size, fraction in zip(SPLITS, sizes, config.split_fractions, strict=True)
        if fraction > 0 and size == 0
    ]
    if n_sessions and empty:
        fractions = "/".join(f"{f:g}" for f in config.split_fractions)
        raise EmptyDatasetError(
            f"only {n_sessions} session(s) left after cleaning, too few for the split "
            f"{fractions}: {' and '.join(empty)} would be empty; give more sessions, lower "
            "--min-session-clicks or change --split-fractions",
            file=config.input_path,
        )


def _check_invalid_values(stats, sources: list[SourceFile], config: PrepareConfig) -> None:
    """Fail when more than ``max_invalid_fraction`` of ALL input rows have a bad value of
    any kind (`schema.INVALID_REASONS`; excluded events and duplicates are cleaning
    choices and do not count). The message gives the count per kind and in total, and
    the file, line and column of the first bad row; below the limit it is a warning."""
    counts = {r: stats.drops.get(r, 0) for r in schema.INVALID_REASONS if stats.drops.get(r, 0)}
    if not counts:
        return
    total = sum(counts.values())
    fraction = total / max(stats.rows, 1)
    first = min(counts, key=lambda r: stats.examples[r][:2])
    file_index, line, raw = stats.examples[first]
    kinds = ", ".join(f"{reason} {count}" for reason, count in counts.items())
    message = (
        f"{total} of {stats.rows} rows ({fraction:.2%}) have a bad value ({kinds}); "
        f"first here, {first}: {raw!r}"
    )
    column = schema.REASON_COLUMN[first]
    file = sources[file_index].path
    if fraction > config.max_invalid_fraction:
        raise InvalidValuesError(
            f"{message}. That is more than max_invalid_fraction="
            f"{config.max_invalid_fraction} of all rows; fix the input or raise the limit "
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
