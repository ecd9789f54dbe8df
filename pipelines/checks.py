"""Checks of the paths a command reads and writes, made before any expensive work (before
Ray starts, before data is read), so a mistake is one `UserError` line naming the path."""

from __future__ import annotations

import os
from pathlib import Path

from recrl.pipelines.errors import UserError

SPLITS = ("train", "val", "test")


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def dataset_uri(data: str) -> str:
    """``data`` as every process of a cluster can open it: URIs (``s3://``, ``gs://``,
    ``file://``) as they are, local paths made absolute."""
    return data if "://" in data else str(Path(data).resolve())


def check_input(path: str | os.PathLike, flag: str, *, kind: str = "file or folder") -> Path:
    """``path`` exists (local paths only: a URI is checked when it is read)."""
    if is_remote(path):
        return Path(str(path))
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} {path}: no such {kind}")
    if kind == "file" and not path.is_file():
        raise UserError(f"{flag} {path}: not a file")
    if kind == "folder" and not path.is_dir():
        raise UserError(f"{flag} {path}: not a folder")
    return path


def check_prepared_dataset(
    path: str | os.PathLike, flag: str = "--data", *, checksums: bool = False
) -> dict:
    """The ``meta.json`` of a folder written by ``recrl prepare``; a folder that is not
    one is a `UserError` naming the folder and what is missing. Its shards are checked
    against the manifest in meta.json (sizes and row counts; SHA-256 too with
    ``checksums``), so a missing or damaged shard is refused, named, before any work."""
    from recrl.pipelines.prepare.manifest import verify_dataset
    from recrl.pipelines.prepare.meta import META_FILE, read_meta

    hint = "not a prepared dataset (write one with `recrl prepare`)"
    if not is_remote(path):
        folder = check_input(path, flag, kind="folder")
        missing = [name for name in (META_FILE, *SPLITS) if not (folder / name).exists()]
        if missing:
            raise UserError(f"{flag} {folder}: {hint}; missing {', '.join(missing)}")
    try:
        meta = read_meta(str(path))
    except (OSError, ValueError) as error:
        raise UserError(f"{flag} {path}: {hint}; {META_FILE} unreadable ({error})") from None
    required = ("n_items", "pad_id", "L", "splits")
    absent = [key for key in required if not isinstance(meta, dict) or key not in meta]
    if absent:
        raise UserError(f"{flag} {path}: {hint}; {META_FILE} lacks {', '.join(absent)}")
    return verify_dataset(str(path), checksums=checksums)


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """``path`` can be a folder recrl writes into: not a file, not under a file, and its
    nearest existing folder writable. Nothing is created."""
    if is_remote(path):
        return Path(str(path))
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` is a file recrl can write: its folder passes `check_output_dir`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder, a file path expected")
    check_output_dir(path.parent, flag)
    return path
