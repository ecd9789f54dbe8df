"""End-to-end runs of `recrl prepare` on Ray (few and small: each costs seconds)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from recrl.envs.session_generator import SessionGeneratorConfig, generate_sessions
from recrl.models import batch as cols
from recrl.pipelines.cli import main
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import EmptyDatasetError, InvalidValuesError, OutputExistsError
from recrl.pipelines.prepare.pipeline import prepare

from benchmarks.pandas_baseline import (
    assert_same_transitions,
    build_transitions,
    generated_events,
    read_split,
)
from tests.conftest import shared_dataset

pytestmark = pytest.mark.ray
SPLIT_DIRS = ("train/", "val/", "test/")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    frame = generate_sessions(SessionGeneratorConfig(seed=3, n_sessions=400, n_items=150))
    folder = tmp_path_factory.mktemp("generated")
    frame.to_parquet(folder / "sessions.parquet", index=False)
    return frame, folder


def test_generated_dataset_matches_the_pandas_reference(ray_session, generated, tmp_path):
    frame, folder = generated
    out = tmp_path / "prepared"
    result = prepare(
        PrepareConfig(source="generic", input_path=str(folder), output_path=str(out), seed=7)
    )
    meta = json.loads((out / "meta.json").read_text())
    rows = meta["rows"]
    assert rows["input"] == len(frame)
    assert rows["kept"] + sum(rows["dropped"].values()) == rows["input"]
    assert sum(s["transitions"] for s in meta["splits"].values()) == rows["kept"]
    assert sum(meta["item_counts"]) == rows["kept"]

    # An independent implementation (one Python loop per session) builds the same rows.
    expected = build_transitions(generated_events(frame), seed=7)
    assert assert_same_transitions(out, expected) == rows["kept"]
    sessions = {n: set(read_split(out, n)[cols.SESSION_ID]) for n in ("train", "val", "test")}
    assert not (sessions["train"] & sessions["val"]) and not (sessions["val"] & sessions["test"])
    assert result.meta["n_items"] == meta["pad_id"]

    # meta.json lists every file written, with its rows: all transitions are in a shard.
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"meta.json"}
    assert {entry["path"] for entry in meta["shards"]} == written
    split_rows = [e["rows"] for e in meta["shards"] if e["path"].startswith(SPLIT_DIRS)]
    assert sum(split_rows) == rows["kept"]

    # Same settings and inputs: reused. Different settings: refused unless --overwrite.
    again = PrepareConfig(source="generic", input_path=str(folder), output_path=str(out), seed=7)
    assert prepare(again).reused
    changed = PrepareConfig(source="generic", input_path=str(folder), output_path=str(out), seed=8)
    with pytest.raises(OutputExistsError, match="seed: 7 -> 8"):
        prepare(changed)


def _write_generic_csv(path, bad_timestamps: int, sessions: int = 30) -> None:
    lines = ["session_id,timestamp,item_id,event"]
    for s in range(sessions):
        for k in range(4):
            lines.append(f"s{s},2024-01-01T00:{s:02d}:{k:02d}Z,i{(s + k) % 7},click")
    for b in range(bad_timestamps):
        lines[1 + 4 * b] = lines[1 + 4 * b].replace("2024-01-01T", "2024-13-01T")
    path.write_text("\n".join(lines) + "\n")


def test_bad_values_are_counted_or_refused_with_file_line_and_column(ray_session, tmp_path):
    source = tmp_path / "log.csv"
    _write_generic_csv(source, bad_timestamps=3)  # 3 of 120 rows = 2.5%
    config = PrepareConfig(
        source="generic", input_path=str(source), output_path=str(tmp_path / "out")
    )
    with pytest.raises(InvalidValuesError) as error:
        prepare(config)
    message = str(error.value)
    assert f"{source}:2, column 'timestamp'" in message
    assert "3 of 120 rows" in message and "2024-13-01T00:00:00Z" in message

    tolerant = PrepareConfig(
        source="generic",
        input_path=str(source),
        output_path=str(tmp_path / "out"),
        max_invalid_fraction=0.05,
    )
    meta = prepare(tolerant).meta
    assert meta["rows"]["dropped"]["invalid_timestamp"] == 3
    # The three sessions that lost a row keep 3 clicks each (> 2), so nothing else drops.
    assert meta["rows"]["kept"] == 117
    assert meta["drop_examples"]["invalid_timestamp"]["line"] == 2


def test_a_filter_that_empties_the_dataset_is_named(ray_session, tmp_path):
    source = tmp_path / "log.csv"
    _write_generic_csv(source, bad_timestamps=0)
    config = PrepareConfig(
        source="generic",
        input_path=str(source),
        output_path=str(tmp_path / "out"),
        min_session_clicks=4,
    )
    with pytest.raises(EmptyDatasetError, match=r"session filter .* more than 4 clicks"):
        prepare(config)


def test_cli_prepare_and_stats(ray_session, tmp_path, capsys):
    source = tmp_path / "log.csv"
    _write_generic_csv(source, bad_timestamps=0)
    out = tmp_path / "out"
    code = main(
        [
            "-q",
            "prepare",
            "--source",
            "generic",
            "--input",
            str(source),
            "--output",
            str(out),
            "--state-len",
            "3",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "rows: 120 input = 120 kept + 0 dropped" in printed
    assert main(["stats", str(out)]) == 0
    assert "state length L=3" in capsys.readouterr().out
    # Bad input is reported, not raised as a traceback, and the exit code says so.
    assert (
        main(
            [
                "-q",
                "prepare",
                "--source",
                "yoochoose",
                "--input",
                str(tmp_path / "nope"),
                "--output",
                str(tmp_path / "o2"),
            ]
        )
        == 2
    )


@pytest.mark.shared_data
def test_yoochoose_sample_counts_add_up(ray_session, tmp_path):
    folder = shared_dataset("yoochoose-rc15-sample")
    meta = prepare(
        PrepareConfig(source="yoochoose", input_path=str(folder), output_path=str(tmp_path))
    ).meta
    rows = meta["rows"]
    assert rows["input"] == 329_537 + 11_825  # clicks + buys rows of the two files
    assert rows["kept"] + rows["dropped_total"] == rows["input"]
    assert sum(s["transitions"] for s in meta["splits"].values()) == rows["kept"]
    sessions = [meta["splits"][n]["sessions"] for n in ("train", "val", "test")]
    assert sessions[1] == sessions[2] == round(sum(sessions) * 0.1)
    assert {s["role"] for s in meta["sources"]} == {"clicks", "buys"}


@pytest.mark.shared_data
def test_movielens_100k_with_purchases_counts_add_up(ray_session, tmp_path):
    folder = shared_dataset("movielens-100k")
    meta = prepare(
        PrepareConfig(
            source="movielens",
            input_path=str(folder),
            output_path=str(tmp_path),
            movielens_positive_threshold=4,
        )
    ).meta
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    clicks = (ratings["rating"] < 4).groupby(ratings["user"]).transform("sum")
    short = int((clicks <= 2).sum())  # rows of users with at most 2 ratings below 4
    assert short > 0
    assert meta["rows"] == {
        "input": 100_000,
        "kept": 100_000 - short,
        "dropped": {"rare_item": 0, "short_session": short},
        "dropped_total": short,
    }
    assert meta["n_items"] == ratings.loc[clicks > 2, "item"].nunique()
    kept = ratings[clicks > 2]
    assert sum(s["sessions"] for s in meta["splits"].values()) == kept["user"].nunique()
    purchases = sum(s["purchases"] for s in meta["splits"].values())
    assert purchases == int((kept["rating"] >= 4).sum())
