"""Reading one large CSV file with several tasks: line-aligned byte ranges ("parts").

A part begins at a line that starts a row, so each is parsed like a file of its own
(`reading.iter_numbered_tables`), with the line numbers of the whole file: the boundaries
are found by one pass over the bytes that counts newlines and quote characters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
from recrl.pipelines.prepare.reading import (
    SourceFile,
    is_utf8,
    iter_numbered_tables,
    line_fields,
    read_first_line,
    resolve_filesystem,
)

PART_BYTES = 64 << 20
"""Bytes of a CSV file per read task: a larger file (local, uncompressed, UTF-8) is read by
several tasks at once, each from a line boundary (`csv_parts`)."""
_SPLITTABLE_SUFFIXES = (".csv", ".dat", ".tsv", ".txt")
"""Text files read in parts; any other suffix (``.gz``...) may be compressed."""


@dataclass(frozen=True)
class FilePart:
    """Bytes ``[start, end)`` of a CSV file, beginning at a line that starts a row."""

    start: int
    end: int
    first_line: int
    """The 1-based line number of the part's first byte in the file."""
    column_names: tuple[str, ...]
    """The file's columns in file order (its header's, or the layout's)."""


def csv_parts(source: SourceFile, part_bytes: int = PART_BYTES) -> list[FilePart] | None:
    """Line-aligned byte ranges of ``source`` to read in parallel, or None to read it whole:
    a small, compressed, non-UTF-8 or non-local file, or one whose lines end in a lone CR.

    A boundary is the byte after a newline with an even number of quote characters before
    it, so no quoted value (which may hold a line break) is cut in two; the line numbers
    count every newline before the boundary, as the whole-file reader does.
    """
    layout = source.layout
    if layout is None or source.size < 2 * part_bytes or not is_utf8(source.encoding):
        return None
    fs, path = resolve_filesystem(source.path)
    if not isinstance(fs, pafs.LocalFileSystem) or not path.lower().endswith(_SPLITTABLE_SUFFIXES):
        return None
    if source.has_header:
        names = tuple(line_fields(read_first_line(source.path, source.encoding), layout))
    else:
        names = tuple(layout.columns)
    starts, first_lines = [0], [1]
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
        if head.count(b"\r") != head.count(b"\r\n"):
            return None  # lone-CR line ends: newline counts would not be line numbers
        handle.seek(0)
        offset = newlines = quotes = 0  # counted over the bytes before ``offset``
        target = part_bytes
        while chunk := handle.read(8 << 20):
            search = max(target - offset - 1, 0)
            while search < len(chunk):
                at = chunk.find(b"\n", search)
                if at < 0:
                    break
                if (quotes + chunk.count(b'"', 0, at)) % 2 == 0:
                    starts.append(offset + at + 1)
                    first_lines.append(newlines + chunk.count(b"\n", 0, at + 1) + 1)
                    target = offset + at + 1 + part_bytes
                    search = max(target - offset - 1, at + 1)
                else:  # inside a quoted value: the next newline
                    search = at + 1
            offset += len(chunk)
            newlines += chunk.count(b"\n")
            quotes += chunk.count(b'"')
    if starts[-1] >= offset:  # the file ends at a boundary
        starts.pop()
        first_lines.pop()
    ends = [*starts[1:], offset]
    return [FilePart(start, end, line, names)
            for start, end, line in zip(starts, ends, first_lines, strict=True)]  # fmt: skip


def read_part(source: SourceFile, file_index: int, part: FilePart) -> Iterator[pa.Table]:
    """The numbered rows of one part of a CSV file (`csv_parts`)."""
    _, path = resolve_filesystem(source.path)
    with open(path, "rb") as handle:
        handle.seek(part.start)
        data = handle.read(part.end - part.start)
    yield from iter_numbered_tables(pa.BufferReader(data), source, file_index, part)
