"""Errors for bad input name the file, the line and the column, and say what was expected."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recrl.pipelines.prepare.adapters import ADAPTERS, find_sources
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import (
    DataError,
    EmptyDatasetError,
    InvalidValuesError,
    MissingInputError,
    OutputExistsError,
    SchemaMismatchError,
)


def config(source: str, path: Path | str, **settings) -> PrepareConfig:
    return PrepareConfig(source=source, input_path=str(path), output_path="unused", **settings)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- DataError formatting ----------------------------------------------------------------


def test_data_error_message_starts_with_file_line_and_column():
    error = DataError("not a number", file="data/clicks.csv", line=12, column="x")
    assert str(error) == "data/clicks.csv:12, column 'x': not a number"
    assert (error.file, error.line, error.column, error.message) == (
        "data/clicks.csv",
        12,
        "x",
        "not a number",
    )
    assert isinstance(error, ValueError)


def test_data_error_message_with_partial_location():
    assert str(DataError("m", file="f.csv")) == "f.csv: m"
    assert str(DataError("m", file="f.csv", line=3)) == "f.csv:3: m"
    assert str(DataError("m", column="item_id")) == "column 'item_id': m"
    assert str(DataError("m")) == "m"


@pytest.mark.parametrize(
    "cls",
    [MissingInputError, SchemaMismatchError, InvalidValuesError, EmptyDatasetError,
     OutputExistsError],
)  # fmt: skip
def test_every_input_error_is_a_data_error(cls):
    error = cls("m", file="f", line=1)
    assert isinstance(error, DataError)
    assert str(error) == "f:1: m"


# --- missing inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["yoochoose", "retailrocket", "movielens", "generic"])
def test_missing_path_names_the_path(tmp_path, source):
    missing = tmp_path / "nowhere" / "clicks.csv"
    with pytest.raises(MissingInputError) as info:
        find_sources(config(source, missing))
    assert info.value.file == str(missing)
    assert str(info.value) == f"{missing}: no such file or folder"


def test_adapter_find_on_a_missing_path(tmp_path):
    with pytest.raises(MissingInputError, match="no such file or folder") as info:
        ADAPTERS["open_bandit"].find(str(tmp_path / "absent"))
    assert str(info.value).startswith(f"{tmp_path / 'absent'}: ")


def test_folder_without_required_file_lists_patterns_and_files_found(tmp_path):
    write(tmp_path / "notes.txt", "hello\n")
    write(tmp_path / "yoochoose-buys.dat", "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n")
    with pytest.raises(MissingInputError) as info:
        find_sources(config("yoochoose", tmp_path))
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no yoochoose input file for clicks: ")
    assert "*clicks*.csv or *clicks*.dat or *clicks*.csv.gz" in message
    assert "(found: notes.txt, yoochoose-buys.dat)" in message


def test_folder_without_any_optional_file_lists_patterns_and_files_found(tmp_path):
    write(tmp_path / "README", "MovieLens\n")
    write(tmp_path / "u.item", "1|Toy Story (1995)\n")
    with pytest.raises(MissingInputError) as info:
        find_sources(config("movielens", tmp_path))
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no movielens input files (looked for ")
    assert "ratings.csv, ratings.dat, u.data" in message
    assert "found: README, u.item" in message


def test_empty_folder_says_no_files(tmp_path):
    with pytest.raises(MissingInputError, match=r"found: no files"):
        find_sources(config("retailrocket", tmp_path))


# --- wrong columns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "session_id,timestamp,category",  # item_id left out
        "session_id,timestamp,itemid,category",  # item_id misspelt, same column count
    ],
)
def test_clicks_header_without_item_id(tmp_path, header):
    path = write(tmp_path / "clicks.csv", f"{header}\n1,2014-04-07T10:51:09.277Z,214536502,0\n")
    with pytest.raises(SchemaMismatchError) as info:
        ADAPTERS["yoochoose"].find(str(tmp_path))
    error = info.value
    assert (error.file, error.line) == (str(path), 1)
    message = str(error)
    assert message.startswith(f"{path}:1: header is missing column(s) ['item_id']")
    assert "expected ['session_id', 'timestamp', 'item_id']" in message
    assert f"found {header.split(',')}" in message


def test_retailrocket_header_without_visitorid(tmp_path):
    path = write(
        tmp_path / "events.csv",
        "timestamp,visitor,event,itemid,transactionid\n1433221332117,257597,view,355908,\n",
    )
    with pytest.raises(SchemaMismatchError, match=r"missing column\(s\) \['visitorid'\]") as info:
        find_sources(config("retailrocket", tmp_path))
    assert (info.value.file, info.value.line) == (str(path), 1)


def test_headerless_clicks_with_wrong_number_of_fields(tmp_path):
    path = write(tmp_path / "yoochoose-clicks.dat", "1,2014-04-07T10:51:09.277Z,214536502\n")
    with pytest.raises(SchemaMismatchError) as info:
        find_sources(config("yoochoose", tmp_path))
    assert (info.value.file, info.value.line) == (str(path), 1)
    assert str(info.value) == (
        f"{path}:1: expected 4 columns ['session_id', 'timestamp', 'item_id', 'category'] "
        "separated by ',', found 3: '1,2014-04-07T10:51:09.277Z,214536502'"
    )


def test_u_data_with_commas_instead_of_tabs(tmp_path):
    path = write(tmp_path / "u.data", "196,242,3,881250949\n")
    with pytest.raises(SchemaMismatchError, match=r"expected 4 columns .* separated by '\\t'"):
        find_sources(config("movielens", path))


@pytest.mark.parametrize("name", ["clicks.csv", "events.csv"])
def test_empty_file(tmp_path, name):
    path = write(tmp_path / name, "")
    source = "yoochoose" if name == "clicks.csv" else "retailrocket"
    with pytest.raises(SchemaMismatchError) as info:
        find_sources(config(source, path))
    assert str(info.value) == f"{path}:1: file is empty"


def test_parquet_without_item_id(tmp_path):
    path = tmp_path / "events.parquet"
    pq.write_table(pa.table({"session_id": [1], "timestamp": [1], "event": ["click"]}), path)
    with pytest.raises(SchemaMismatchError) as info:
        find_sources(config("generic", tmp_path))
    assert info.value.file == str(path)
    assert "missing column(s) ['item_id']" in str(info.value)
    assert "found ['session_id', 'timestamp', 'event']" in str(info.value)


def test_file_that_is_not_parquet(tmp_path):
    write(tmp_path / "events.parquet", "session_id,timestamp,item_id,event\n")
    with pytest.raises(SchemaMismatchError, match="not a readable parquet file"):
        find_sources(config("generic", tmp_path))


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": "lastfm"}, "source must be one of yoochoose, retailrocket"),
        ({"state_len": 0}, "state_len must be >= 1, got 0"),
        ({"min_session_clicks": -1}, "must be >= 0"),
        ({"min_item_count": -1}, "must be >= 0"),
        ({"split": "random"}, "split must be 'session' or 'time'"),
        ({"split_fractions": (0.8, 0.1, 0.2)}, "summing to 1"),
        ({"split_fractions": (0.9, 0.2, -0.1)}, "non-negative"),
        ({"split_fractions": (0.5, 0.5)}, "three non-negative numbers"),
        ({"max_invalid_fraction": 1.5}, r"max_invalid_fraction must lie in \[0, 1\]"),
        ({"retailrocket_purchase": "view"}, "retailrocket_purchase must be"),
        ({"rows_per_shard": 0}, "rows_per_shard must be >= 1"),
    ],
)
def test_invalid_settings_are_rejected(settings, message):
    base = {"source": "generic", "input_path": "in", "output_path": "out"}
    with pytest.raises(ValueError, match=message):
        PrepareConfig(**{**base, **settings})


def test_default_settings_follow_the_spec():
    c = PrepareConfig(source="yoochoose", input_path="in", output_path="out")
    assert (c.state_len, c.r_click, c.r_buy, c.min_session_clicks) == (10, 0.2, 1.0, 2)
    assert (c.split, c.split_fractions, c.retailrocket_purchase) == (
        "session",
        (0.8, 0.1, 0.1),
        "addtocart",
    )
    assert c.movielens_positive_threshold is None
