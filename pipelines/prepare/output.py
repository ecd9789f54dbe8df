"""The output folder of `recrl prepare`: refusing to clobber it, and writing the shards.

`prepare` builds the new dataset in a staging sibling and swaps it in when complete
(`recrl.pipelines.atomic_output`), ``meta.json`` with its shard manifest written last. An existing
folder with the same dataset id is reused once its shards match the manifest; a different
or incomplete one is refused unless ``overwrite``; a folder holding files recrl did not
write (at any depth) is refused always, and nothing in it is ever deleted.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from recrl.models import batch as cols
from recrl.pipelines.atomic_output import check_writable, list_files, recover, refuse_foreign
from recrl.pipelines.prepare import stages
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import OutputExistsError
from recrl.pipelines.prepare.manifest import manifest_paths, verify_dataset
from recrl.pipelines.prepare.meta import META_FILE, read_meta
from recrl.pipelines.prepare.reading import resolve_filesystem
from recrl.pipelines.prepare.split import SPLITS

ITEMS_FILE = "items.parquet"
SESSIONS_FILE = "sessions.parquet"
OUTPUT_ENTRIES = (*SPLITS, ITEMS_FILE, SESSIONS_FILE, META_FILE)
"""The top-level entries `prepare` writes."""
WRITTEN_BY_PREPARE = re.compile(
    rf"({'|'.join(SPLITS)})/part-\d+-\d+\.parquet|{re.escape(ITEMS_FILE)}"
    rf"|{re.escape(SESSIONS_FILE)}|{re.escape(META_FILE)}"
)
"""Names any version of `prepare` writes: what a folder without a manifest may hold."""


def written(path: str) -> bool:
    """Whether ``path`` (relative to the output folder) has a name `prepare` writes."""
    return WRITTEN_BY_PREPARE.fullmatch(path) is not None


def check_output(config: PrepareConfig, dataset_id: str, settings: dict) -> dict | None:
    """Return the existing meta when the folder already holds this dataset and its shards
    match the manifest (checksums included); refuse a different, damaged or incomplete
    dataset unless ``overwrite``, and files recrl did not write always. Deletes nothing:
    the folder is replaced only when the new dataset is complete."""
    recover(config.output_path)  # a swap a killed run left half done
    check_writable(config.output_path)
    fs, local = resolve_filesystem(config.output_path)
    info = fs.get_file_info(local)
    if info.type == pafs.FileType.NotFound:
        return None
    if info.type != pafs.FileType.Directory:
        raise OutputExistsError("output path exists and is not a folder", file=local)
    files = list_files(config.output_path)
    if not files:
        return None
    meta = _meta_or_none(config.output_path) if META_FILE in files else None
    listed = manifest_paths(meta) if meta is not None else None
    # Shard names only prepare writes count as its own even when the manifest does not list
    # them (an extra shard), so --overwrite can replace a damaged dataset.
    refuse_foreign(local, files, lambda f: (listed is not None and f in listed) or written(f))
    if config.overwrite:
        return None
    if meta is None:
        raise OutputExistsError(
            "output folder holds an incomplete dataset (no readable meta.json: an earlier run "
            "stopped); pass --overwrite to replace it",
            file=local,
        )
    if listed is None:
        raise OutputExistsError(
            f"output folder holds a dataset of an older recrl (format_version "
            f"{meta.get('format_version')}, no shard manifest); pass --overwrite to rewrite it",
            file=local,
        )
    if meta.get("dataset_id") == dataset_id:
        return verify_dataset(config.output_path, checksums=True)
    changed = _differences(meta.get("settings", {}), settings)
    raise OutputExistsError(
        f"output folder holds a different dataset (changed: {changed}); pass "
        "--overwrite to replace it or choose another folder",
        file=local,
    )


def _meta_or_none(path: str) -> dict | None:
    try:
        meta = read_meta(path)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _differences(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(changed) or "the input files"


def write_splits(
    blocks, config: PrepareConfig, transform: Callable[[pa.Table], pa.Table]
) -> tuple[dict[str, list[str]], int]:
    """Write each split's rows as parquet shards, one Ray task per block of ``blocks`` (a
    Ray Dataset); returns the shard files per split and the rows written.

    ``transform`` turns a block into its transitions inside the same task (the windows of
    `stages.session_transitions`), so the transitions of the whole dataset never sit in the
    object store at once: each task holds one block's. Writing all three splits from one
    pass over the blocks costs one round of tasks instead of three Ray Data executions.
    """
    import ray

    fs, local = resolve_filesystem(config.output_path)
    for name in SPLITS:
        fs.create_dir(posixpath.join(local, name), recursive=True)

    @ray.remote
    def write_block(table: pa.Table, block: int, transform) -> tuple[dict[str, list[str]], int]:
        table = transform(table)
        written: dict[str, list[str]] = {name: [] for name in SPLITS}
        for code, name in enumerate(SPLITS):
            part = stages.select_split(table, code=code)
            for shard, start in enumerate(range(0, part.num_rows, config.rows_per_shard)):
                file = f"{name}/part-{block:05d}-{shard:03d}.parquet"
                chunk = part.slice(start, config.rows_per_shard)
                pq.write_table(chunk, posixpath.join(local, file), filesystem=fs)
                written[name].append(file)
        return written, table.num_rows

    # through the object store, once: a transform holds the kept sessions (tens of MB)
    transform_ref = ray.put(transform)
    refs = blocks.to_arrow_refs()
    results = ray.get([write_block.remote(ref, i, transform_ref) for i, ref in enumerate(refs)])
    files = {name: sorted(f for r, _ in results for f in r[name]) for name in SPLITS}
    return files, sum(rows for _, rows in results)


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
