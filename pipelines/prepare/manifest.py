"""The shard manifest of a prepared dataset: every file `recrl prepare` wrote, with its row
count, byte size and SHA-256, stored in ``meta.json`` under ``shards``.

`verify_dataset` compares a folder with its manifest and refuses, naming the file, a shard
that is missing, extra, truncated or grown (size), altered (checksum) or holds another row
count (parquet footer). Sizes and row counts cost one ``stat`` and one footer read per
shard; checksums read every byte, so they are checked on reuse and by ``stats --verify``.

Datasets written before the manifest existed (``format_version`` 1) are refused with a
sentence that says to re-run ``recrl prepare --overwrite``: without a manifest a missing
shard cannot be told from a complete dataset, and training on part of the rows silently is
what the manifest is for.
"""

from __future__ import annotations

import hashlib
import posixpath
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from recrl.pipelines.atomic_output import list_files
from recrl.pipelines.prepare.errors import DataError, ShardMismatchError
from recrl.pipelines.prepare.meta import META_FILE, read_meta
from recrl.pipelines.prepare.reading import resolve_filesystem

SHARDS = "shards"
"""Key of the manifest in meta.json: a list of {path, rows, bytes, sha256}."""
REBUILD = "rebuild it with `recrl prepare ... --overwrite`"
SHOWN = 3


def _sha256(fs: pafs.FileSystem, path: str, chunk_size: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with fs.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _rows(fs: pafs.FileSystem, path: str) -> int:
    with fs.open_input_file(path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def build_manifest(root: str) -> list[dict[str, Any]]:
    """One entry per file under ``root`` except meta.json, sorted by path."""
    fs, local = resolve_filesystem(root)
    files = [f for f in list_files(root) if f != META_FILE]

    def describe(rel: str) -> dict[str, Any]:
        path = posixpath.join(local, rel)
        return {
            "path": rel,
            "rows": _rows(fs, path),
            "bytes": fs.get_file_info(path).size,
            "sha256": _sha256(fs, path),
        }

    with ThreadPoolExecutor(max_workers=4) as pool:  # hashlib releases the GIL
        return list(pool.map(describe, files))


def verify_dataset(path: str, *, checksums: bool) -> dict[str, Any]:
    """The meta.json of the prepared dataset at ``path`` once its files match the manifest;
    otherwise a `ShardMismatchError` naming the shards that differ and how."""
    try:
        meta = read_meta(path)
    except FileNotFoundError:
        raise DataError(
            f"not a prepared dataset (no {META_FILE}); write one with `recrl prepare`", file=path
        ) from None
    except (OSError, ValueError) as error:
        raise DataError(f"{META_FILE} is unreadable ({error}); {REBUILD}", file=path) from None
    if not isinstance(meta, dict) or SHARDS not in meta:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise ShardMismatchError(
            f"written by an older recrl (format_version {version}) without a shard manifest, "
            f"so missing or damaged shards cannot be detected; {REBUILD}",
            file=path,
        )
    fs, local = resolve_filesystem(path)
    listed = {entry["path"]: entry for entry in meta[SHARDS]}
    present = set(list_files(path)) - {META_FILE}
    problems = [f"{rel} is missing" for rel in sorted(listed.keys() - present)]
    problems += [f"{rel} is not in the manifest" for rel in sorted(present - listed.keys())]
    for rel in sorted(listed.keys() & present):
        problem = _check_shard(fs, posixpath.join(local, rel), listed[rel], checksums)
        if problem:
            problems.append(f"{rel} {problem}")
    if problems:
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise ShardMismatchError(
            f"shards differ from the manifest in {META_FILE}: "
            f"{'; '.join(problems[:SHOWN])}{more}; {REBUILD}",
            file=path,
        )
    return meta


def _check_shard(fs, path: str, entry: dict[str, Any], checksums: bool) -> str | None:
    size = fs.get_file_info(path).size
    if size != entry["bytes"]:
        change = "truncated" if size < entry["bytes"] else "grown"
        return f"is {change} ({size} bytes, the manifest says {entry['bytes']})"
    try:
        rows = _rows(fs, path)
    except (OSError, ValueError) as error:
        return f"is altered (not readable as parquet: {error})"
    if rows != entry["rows"]:
        return f"holds {rows} rows, the manifest says {entry['rows']}"
    if checksums and _sha256(fs, path) != entry["sha256"]:
        return "is altered (its SHA-256 differs from the manifest)"
    return None


def manifest_paths(meta: dict[str, Any]) -> set[str] | None:
    """The files the manifest lists (meta.json included); None without a manifest."""
    if SHARDS not in meta:
        return None
    return {entry["path"] for entry in meta[SHARDS]} | {META_FILE}


__all__ = ["SHARDS", "build_manifest", "manifest_paths", "verify_dataset"]
