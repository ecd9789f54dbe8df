"""Reading source files as Arrow tables whose rows keep their file and line number.

Both Ray Data (through `NumberedFileDatasource`) and the plain local path used by tests and
benchmarks go through `iter_numbered_tables`, so an error found on a cluster names the same
line a user sees in their editor.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.errors import DataError, MissingInputError, SchemaMismatchError

if TYPE_CHECKING:
    from recrl.pipelines.prepare.file_parts import FilePart


@dataclass(frozen=True)
class CsvLayout:
    """How a delimited text file of a source is laid out."""

    columns: tuple[str, ...]
    """Column names in file order (used as names when the file has no header row)."""
    required: tuple[str, ...]
    """Columns that must be present; only these are read, all as strings."""
    delimiter: str = ","
    header: bool | None = True
    """True: first line holds names; False: no header; None: detect from the first line."""


@dataclass(frozen=True)
class SourceFile:
    """One input file and the role it plays for its adapter (``clicks``, ``buys``...)."""

    path: str
    role: str
    layout: CsvLayout | None
    """None for parquet files, which carry their own schema."""
    has_header: bool = True
    size: int = 0
    encoding: str = "utf-8"
    """Text encoding of a CSV file (a Python codec name)."""


def resolve_filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path for a local path or an ``s3://``/``gs://`` URI."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def list_files(input_path: str) -> list[pafs.FileInfo]:
    """The files at ``input_path`` (itself if a file, its direct children if a folder)."""
    fs, path = resolve_filesystem(input_path)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise MissingInputError("no such file or folder", file=input_path)
    if info.type == pafs.FileType.File:
        return [info]
    children = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted((c for c in children if c.type == pafs.FileType.File), key=lambda c: c.path)


def is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def read_first_line(path: str, encoding: str = "utf-8") -> str:
    """The first line of a text file (a UTF-8 byte-order mark removed, bad bytes replaced)."""
    fs, local = resolve_filesystem(path)
    with fs.open_input_stream(local) as stream:
        head = stream.read(64 * 1024)
    text = head.decode("utf-8-sig" if is_utf8(encoding) else encoding, errors="replace")
    return text.splitlines()[0] if text else ""


def line_fields(line: str, layout: CsvLayout) -> list[str]:
    """The fields of a header line, unquoted and stripped."""
    return [f.strip().strip('"') for f in line.split(layout.delimiter)]


def check_layout(path: str, layout: CsvLayout, encoding: str = "utf-8") -> bool:
    """Check the first line against the layout; returns whether the file has a header row.

    Raises `SchemaMismatchError` naming the expected and the found columns.
    """
    first = read_first_line(path, encoding)
    if not first:
        raise SchemaMismatchError("file is empty", file=path, line=1)
    fields = line_fields(first, layout)
    # Data rows never hold a column name, so one known name marks a header (whose missing
    # columns are then reported) rather than a data row of a headerless file.
    looks_like_header = any(f in layout.columns for f in fields if f)
    has_header = looks_like_header if layout.header is None else layout.header
    if has_header:
        missing = [c for c in layout.required if c not in fields]
        if missing:
            raise SchemaMismatchError(
                f"header is missing column(s) {missing}; expected {list(layout.required)}, "
                f"found {fields}",
                file=path,
                line=1,
            )
    elif len(fields) != len(layout.columns):
        raise SchemaMismatchError(
            f"expected {len(layout.columns)} columns {list(layout.columns)} "
            f"separated by {layout.delimiter!r}, found {len(fields)}: {first[:200]!r}",
            file=path,
            line=1,
        )
    return has_header


def check_parquet_columns(path: str, required: Sequence[str]) -> None:
    """Raise `SchemaMismatchError` unless the parquet file at ``path`` has ``required``."""
    fs, local = resolve_filesystem(path)
    try:
        with fs.open_input_file(local) as f:
            names = pq.read_schema(f).names
    except pa.ArrowInvalid as error:
        raise SchemaMismatchError(f"not a readable parquet file ({error})", file=path) from None
    missing = [c for c in required if c not in names]
    if missing:
        raise SchemaMismatchError(
            f"missing column(s) {missing}; expected {list(required)}, found {names}", file=path
        )


def _csv_reader(
    stream, source: SourceFile, invalid_rows: list, part: FilePart | None = None
):  # fmt: skip
    layout = source.layout
    assert layout is not None
    if part is not None and part.start > 0:  # a later part: no header, names given
        names = list(part.column_names)
    else:
        names = None if source.has_header else list(layout.columns)
    # pyarrow numbers an invalid row from the start of what it reads
    line_offset = 0 if part is None else part.first_line - 1
    read = pacsv.ReadOptions(
        column_names=names,
        use_threads=False,
        # A small file is read in one small block: a 32 MiB buffer per file would cost
        # more than parsing it (compressed sizes say nothing of the text's size).
        block_size=(1 << 20)
        if 0 < source.size < (1 << 20) and not source.path.endswith(".gz")
        else 32 << 20,
        # UTF-8 is read natively (a byte-order mark is skipped, bad bytes raise and are
        # located by `_encoding_error`); other encodings are transcoded by Python.
        encoding="utf8" if is_utf8(source.encoding) else source.encoding,
    )

    def on_invalid_row(row) -> str:
        invalid_rows.append((None if row.number is None else row.number + line_offset, row.text))
        return "skip"

    parse = pacsv.ParseOptions(
        delimiter=layout.delimiter,
        invalid_row_handler=on_invalid_row,
        ignore_empty_lines=False,
    )
    convert = pacsv.ConvertOptions(
        include_columns=list(layout.required),
        column_types={c: pa.string() for c in layout.required},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    return pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


def iter_numbered_tables(
    stream, source: SourceFile, file_index: int, part: FilePart | None = None
) -> Iterator[pa.Table]:
    """Yield the file's rows as string tables with ``_file``, ``_line`` and ``_bad`` columns
    (``stream`` holds the bytes of ``part`` when one is given: `file_parts.csv_parts`).

    Rows with the wrong number of fields are yielded too, with every column null, ``_drop``
    set to ``malformed_row`` and their text in ``_bad``, so they are counted, not lost.
    """
    if source.layout is None:
        yield from _iter_parquet(stream, file_index)
        return
    try:
        yield from _iter_csv(stream, source, file_index, part)
    except pa.ArrowInvalid as error:
        if "UTF8" not in str(error) or not is_utf8(source.encoding):
            raise
        raise _encoding_error(source) from None


def _iter_csv(
    stream, source: SourceFile, file_index: int, part: FilePart | None = None
) -> Iterator[pa.Table]:  # fmt: skip
    invalid_rows: list[tuple[int, str]] = []
    reader = _csv_reader(stream, source, invalid_rows, part)
    if part is not None and part.start > 0:
        first_line = part.first_line
    else:
        first_line = 2 if source.has_header else 1
    next_line = first_line
    pending_bad = np.empty(0, dtype=np.int64)
    for batch in reader:
        if invalid_rows:
            bad_numbers = np.array([n for n, _ in invalid_rows], dtype=np.int64)
            yield _malformed_table(invalid_rows, source, file_index)
            invalid_rows.clear()
            pending_bad = np.union1d(pending_bad, bad_numbers)
        k = batch.num_rows
        # Good rows take the line numbers not used by skipped malformed rows, in order.
        candidates = np.arange(next_line, next_line + k + len(pending_bad), dtype=np.int64)
        lines = candidates[~np.isin(candidates, pending_bad)][:k]
        if k:
            next_line = int(lines[-1]) + 1
            pending_bad = pending_bad[pending_bad >= next_line]
        if k:
            table = pa.Table.from_batches([batch])
            # A quoted value may hold line breaks: that row spans several lines, and the
            # rows after it start further down the file.
            breaks = _line_breaks(table, source.layout.required)
            if breaks.any():
                lines = lines + np.concatenate([[0], np.cumsum(breaks)[:-1]])
                next_line = int(lines[-1] + breaks[-1]) + 1
            table = _with_bookkeeping(table, file_index, lines)
            if breaks.any():
                table = _mark_multiline(table, breaks > 0)
            yield table
    if invalid_rows:
        yield _malformed_table(invalid_rows, source, file_index)


def _line_breaks(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Line breaks inside the values of each row (0 for an ordinary one-line row)."""
    total = np.zeros(table.num_rows, dtype=np.int64)
    for name in columns:
        counts = pc.count_substring_regex(table.column(name), r"\r\n|\r|\n")
        total += counts.fill_null(0).to_numpy().astype(np.int64)
    return total


def _mark_multiline(table: pa.Table, multiline: np.ndarray) -> pa.Table:
    """Rows whose value spans lines are ``malformed_row``: an id or time never holds a
    line break, and such a row is nearly always a quote left open by mistake."""
    drop = np.where(multiline, schema.REASON_CODE["malformed_row"], schema.KEPT)
    text = pc.binary_join_element_wise(
        *[
            pc.cast(table.column(c), pa.string()).fill_null("")
            for c in table.column_names
            if not c.startswith("_")
        ],
        ",",
    )
    bad = pc.if_else(pa.array(multiline), pc.utf8_slice_codeunits(text, 0, 200), None)
    table = table.set_column(
        table.schema.get_field_index(schema.DROP), schema.DROP, pa.array(drop.astype(np.uint8))
    )
    return table.set_column(table.schema.get_field_index(schema.BAD), schema.BAD, bad)


def _encoding_error(source: SourceFile) -> DataError:
    """A `DataError` at the first byte of ``source`` that is not UTF-8: its line (counted
    in the raw bytes) and column (counted by delimiters before it; quotes are not parsed)."""
    fs, local = resolve_filesystem(source.path)
    line, prefix, bad = 1, b"", b""
    with fs.open_input_stream(local) as stream:
        decoder = codecs.getincrementaldecoder("utf-8")()
        while chunk := stream.read(8 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                start = max(error.start - len(error.object) + len(chunk), 0)
                head = chunk[:start]
                bad = chunk[start : start + 1]
                line += head.count(b"\n")
                cut = head.rfind(b"\n")
                prefix = head[cut + 1 :] if cut >= 0 else prefix + head
                break
            line += chunk.count(b"\n")
            cut = chunk.rfind(b"\n")
            prefix = chunk[cut + 1 :] if cut >= 0 else (prefix + chunk)[-(1 << 20) :]
    layout = source.layout
    assert layout is not None
    names = list(layout.columns)
    if source.has_header:
        names = [f.strip().strip('"') for f in read_first_line(source.path).split(layout.delimiter)]
    field = prefix.count(layout.delimiter.encode())
    column = names[field] if field < len(names) else f"#{field + 1}"
    byte = f"byte 0x{bad.hex()}" if bad else "a byte"
    return DataError(
        f"{byte} at character {len(prefix.decode('utf-8', errors='replace')) + 1} of the line "
        "is not UTF-8; pass the file's encoding, e.g. --encoding latin-1",
        file=source.path,
        line=line,
        column=column,
    )


def _with_bookkeeping(table: pa.Table, file_index: int, lines: np.ndarray) -> pa.Table:
    n = table.num_rows
    table = table.append_column(schema.FILE, pa.array(np.full(n, file_index, dtype=np.int32)))
    table = table.append_column(schema.LINE, pa.array(lines.astype(np.int64)))
    table = table.append_column(schema.DROP, pa.array(np.zeros(n, dtype=np.uint8)))
    return table.append_column(schema.BAD, pa.nulls(n, pa.string()))


def _malformed_table(rows: list[tuple[int, str]], source: SourceFile, file_index: int):
    assert source.layout is not None
    n = len(rows)
    columns = {c: pa.nulls(n, pa.string()) for c in source.layout.required}
    columns[schema.FILE] = pa.array(np.full(n, file_index, dtype=np.int32))
    columns[schema.LINE] = pa.array([-1 if r[0] is None else r[0] for r in rows], pa.int64())
    columns[schema.DROP] = pa.array(np.full(n, schema.REASON_CODE["malformed_row"], dtype=np.uint8))
    columns[schema.BAD] = pa.array([r[1][:200] for r in rows], pa.string())
    return pa.table(columns)


def _iter_parquet(stream, file_index: int) -> Iterator[pa.Table]:
    parquet = pq.ParquetFile(stream)
    next_line = 1
    for batch in parquet.iter_batches(batch_size=1 << 20):
        table = pa.Table.from_batches([batch])
        lines = np.arange(next_line, next_line + table.num_rows, dtype=np.int64)
        next_line += table.num_rows
        yield _with_bookkeeping(table, file_index, lines)


def read_local(
    sources: Sequence[SourceFile], file_indices: Sequence[int], *, max_rows: int | None = None
) -> list[pa.Table]:
    """Read sources without Ray (tests, benchmarks, tiny inputs, and samples of at most
    ``max_rows`` rows from the start of each file)."""
    tables = []
    for source, index in zip(sources, file_indices, strict=True):
        fs, path = resolve_filesystem(source.path)
        # Text files go through a stream, which decompresses *.gz like Ray's reader does;
        # parquet needs random access.
        open_file = fs.open_input_file if source.layout is None else fs.open_input_stream
        with open_file(path) as stream:
            rows = 0
            for table in iter_numbered_tables(stream, source, index):
                if max_rows is not None and rows + table.num_rows >= max_rows:
                    tables.append(table.slice(0, max_rows - rows))
                    break
                rows += table.num_rows
                tables.append(table)
    return tables
