"""A large CSV file read in line-aligned parts gives the rows, line numbers and malformed
rows of reading it whole (`file_parts.csv_parts`)."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest
from recrl.pipelines.prepare.file_parts import csv_parts, read_part
from recrl.pipelines.prepare.reading import CsvLayout, SourceFile, iter_numbered_tables

LAYOUT = CsvLayout(columns=("session_id", "timestamp", "item_id"),
                   required=("session_id", "timestamp", "item_id"))  # fmt: skip


def write_log(path, header: bool) -> SourceFile:
    lines = ["session_id,timestamp,item_id"] if header else []
    for row in range(400):
        if row == 250:  # a quoted value over three lines: one row, malformed
            lines.append('7,"2014-04-01\nT10:00\n",5')
        elif row == 123:
            lines.append("8,2014-04-01T10:00:00Z")  # a field short
        else:
            lines.append(f"{row},2014-04-01T10:{row % 60:02d}:00Z,{1000 + row}")
    path.write_text("\n".join(lines) + "\n")
    return SourceFile(str(path), "clicks", LAYOUT, has_header=header, size=path.stat().st_size)


def whole(source: SourceFile) -> pa.Table:
    with pa.OSFile(source.path) as stream:
        return pa.concat_tables(iter_numbered_tables(stream, source, 0))


def in_parts(source: SourceFile, part_bytes: int) -> tuple[pa.Table, list]:
    parts = csv_parts(source, part_bytes)
    assert parts is not None
    tables = [t for part in parts for t in read_part(source, 0, part)]
    return pa.concat_tables(tables), parts


def sorted_rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: row["_line"])


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("part_bytes", [97, 500, 3000])
def test_parts_give_the_rows_and_lines_of_the_whole_file(tmp_path, header, part_bytes):
    source = write_log(tmp_path / "clicks.csv", header)
    expected = whole(source)
    got, parts = in_parts(source, part_bytes)
    assert len(parts) > 1
    assert parts[0].start == 0 and parts[-1].end == source.size
    assert all(a.end == b.start for a, b in itertools.pairwise(parts))
    assert sorted_rows(got) == sorted_rows(expected)
    lines = got.column("_line").to_pylist()
    assert len(lines) == 400 and min(lines) == (2 if header else 1)


def test_no_part_starts_inside_a_quoted_value(tmp_path):
    source = write_log(tmp_path / "clicks.csv", header=True)
    text = (tmp_path / "clicks.csv").read_bytes()
    for part in csv_parts(source, 50):
        assert text[: part.start].count(b'"') % 2 == 0
        assert part.start == 0 or text[part.start - 1 : part.start] == b"\n"
        assert part.first_line == text[: part.start].count(b"\n") + 1


def test_small_compressed_or_lone_cr_files_are_read_whole(tmp_path):
    source = write_log(tmp_path / "clicks.csv", header=True)
    assert csv_parts(source) is None  # far below the default part size
    gz = tmp_path / "clicks.csv.gz"
    gz.write_bytes(b"x" * 1000)
    assert csv_parts(SourceFile(str(gz), "clicks", LAYOUT, size=1000), 100) is None
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b"session_id,timestamp,item_id\r1,2014-04-01T10:00:00Z,5\r" * 20)
    assert csv_parts(SourceFile(str(cr), "clicks", LAYOUT, size=cr.stat().st_size), 50) is None
