"""``meta.json`` of a prepared dataset: what downstream training needs and where rows went."""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from recrl.pipelines.prepare.reading import SourceFile, resolve_filesystem

META_FILE = "meta.json"
FORMAT_VERSION = 2
"""2: meta.json lists every shard (``shards``: path, rows, bytes, sha256)."""


def file_sha256(path: str, chunk_size: int = 8 << 20) -> str:
    fs, local = resolve_filesystem(path)
    digest = hashlib.sha256()
    # compression=None: hash the bytes on disk, as sha256sum does, not a decompressed .gz.
    with fs.open_input_stream(local, compression=None) as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def describe_sources(sources: list[SourceFile]) -> list[dict[str, Any]]:
    return [
        {
            "path": s.path,
            "name": posixpath.basename(s.path),
            "role": s.role,
            "size": s.size,
            "sha256": file_sha256(s.path),
            "header": s.has_header,
        }
        for s in sources
    ]


def fingerprint(settings: dict[str, Any], sources: list[dict[str, Any]]) -> str:
    """Identity of a dataset: the settings that shape it and the content of its inputs."""
    payload = {
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "sources": sorted((s["role"], s["name"], s["sha256"]) for s in sources),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class RowAccounting:
    """Where every input row went; `check` proves the counts add up."""

    input_rows: int
    kept_rows: int
    dropped: dict[str, int]

    def check(self) -> None:
        total = self.kept_rows + sum(self.dropped.values())
        if total != self.input_rows:
            raise AssertionError(
                f"row accounting is off: {self.input_rows} input rows but {self.kept_rows} "
                f"kept + {sum(self.dropped.values())} dropped = {total}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input_rows,
            "kept": self.kept_rows,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
        }


def write_meta(output_path: str, meta: dict[str, Any]) -> None:
    fs, local = resolve_filesystem(output_path)
    with fs.open_output_stream(posixpath.join(local, META_FILE)) as stream:
        stream.write(json.dumps(meta, indent=2, sort_keys=False).encode())


def read_meta(dataset_path: str) -> dict[str, Any]:
    """Load ``meta.json`` of a prepared dataset folder."""
    fs, local = resolve_filesystem(dataset_path)
    with fs.open_input_stream(posixpath.join(local, META_FILE)) as stream:
        return json.loads(stream.read().decode())
