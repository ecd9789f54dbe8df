"""The output folder of `recrl prepare`: refusing to clobber it, and writing the shards.

`prepare` writes exactly `OUTPUT_ENTRIES`; ``meta.json`` comes last and marks the folder
complete. An existing folder with the same dataset id is reused, a different one refused
unless ``overwrite``, and files recrl did not write are never deleted.
"""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from models import batch as cols
from pipelines.prepare import stages
from pipelines.prepare.config import PrepareConfig
from pipelines.prepare.errors import OutputExistsError
from pipelines.prepare.meta import META_FILE, read_meta
from pipelines.prepare.reading import resolve_filesystem
from pipelines.prepare.split import SPLITS

ITEMS_FILE = "items.parquet"
SESSIONS_FILE = "sessions.parquet"
OUTPUT_ENTRIES = (*SPLITS, ITEMS_FILE, SESSIONS_FILE, META_FILE)
"""Everything `prepare` writes; with ``overwrite`` only these are removed."""


def check_output(config: PrepareConfig, dataset_id: str, settings: dict) -> dict | None:
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


def write_splits(transitions, config: PrepareConfig) -> dict[str, list[str]]:
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


def counts_for(items: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Counts indexed by encoded item id (``ids`` is a sorted subset of ``items``)."""
    out = np.zeros(len(items), dtype=np.int64)
    out[np.searchsorted(items, ids)] = counts
    return out


def write_items(output_path: str, items: np.ndarray, item_counts: dict) -> None:
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


def write_sessions(output_path, kept: stages.KeptSessions, sessions, keep) -> None:
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
