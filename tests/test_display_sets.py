"""Display-set records: near-in-time sets, histories, MovieLens / MIND / generic builders."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from recrl.pipelines.display_sets.build import build_display_sets, trivial_feature_precision
from recrl.pipelines.display_sets.config import DisplaySetConfig
from recrl.pipelines.display_sets.near_time import near_time_sets
from recrl.pipelines.display_sets.records import load_display_sets, previous_clicks, split_users
from recrl.pipelines.prepare.errors import InvalidValuesError


def test_near_time_sets_take_other_users_nearest_distinct_items():
    # events (user, time, item); K = 3, so two neighbours per click
    user = np.array([0, 1, 2, 1, 2, 0])
    time = np.array([10, 11, 12, 13, 30, 31])
    item = np.array([0, 1, 2, 0, 3, 4])
    sets = near_time_sets(user, time, item, set_size=3, seed=0)
    assert sets.rows.tolist() == [0, 1, 2, 3, 4, 5]
    expected = {
        0: {1, 2},  # (1,13,0) is the clicked item itself: skipped
        1: {0, 2},  # nearest: t10 item 0 (user 0), t12 item 2; t13 is its own user
        2: {1, 0},  # t11 item 1, then t13 item 0 and t10 item 0 (one copy only)
        3: {2, 3},  # t12 item 2; t10 is its own item, t11 its own user; then t30 item 3
        4: {4, 0},  # t31 item 4, then t13 item 0 (t12 is user 2 itself)
        5: {3, 0},  # t30 item 3, then t13 item 0
    }
    for r, row in enumerate(sets.rows):
        shown = sets.shown[r]
        assert shown[sets.click[r]] == item[row]
        assert set(shown.tolist()) - {item[row]} == expected[row]
        assert len(set(shown.tolist())) == 3


def test_near_time_sets_drop_clicks_without_enough_neighbours():
    user = np.array([0, 0, 1])
    time = np.array([1, 2, 3])
    item = np.array([0, 1, 0])
    # Distinct items by other users: event 0/1 see only item 0 of user 1 (event 0 clicked 0).
    sets = near_time_sets(user, time, item, set_size=2, seed=0)
    assert sets.rows.tolist() == [1, 2]
    assert sorted(sets.shown[0].tolist()) == [0, 1]


def test_per_user_cap_spreads_neighbours_over_users():
    user = np.array([0, 1, 1, 1, 2])
    time = np.array([0, 1, 2, 3, 9])
    item = np.array([9, 1, 2, 3, 4])
    sets = near_time_sets(user, time, item, set_size=3, seed=0, per_user=1)
    row0 = sets.shown[np.flatnonzero(sets.rows == 0)[0]]
    assert set(row0.tolist()) == {9, 1, 4}  # one item of user 1 (the nearest), one of user 2


def test_click_slot_is_uniform_over_the_set():
    rng = np.random.default_rng(0)
    n = 4000
    sets = near_time_sets(
        rng.integers(0, 50, n), np.arange(n), rng.integers(0, 200, n), set_size=4, seed=1
    )
    counts = np.bincount(sets.click, minlength=4) / len(sets.click)
    assert np.allclose(counts, 0.25, atol=0.03)


def test_previous_clicks_stop_at_the_users_first_click():
    stream = np.array([10, 11, 12, 20, 21])  # user A: 10, 11, 12; user B: 20, 21
    start = np.array([0, 0, 3, 3])
    pos = np.array([0, 2, 3, 5])  # A before any click, A before 12, B first, B after 21
    out = previous_clicks(stream, start, pos, history_len=3, pad_id=99)
    assert out.tolist() == [[99, 99, 99], [99, 10, 11], [99, 99, 99], [99, 20, 21]]


def test_user_split_fractions_and_seed():
    codes = split_users(800, (0.5, 0.125, 0.375), seed=3)
    assert np.bincount(codes).tolist() == [400, 100, 300]
    assert (codes == split_users(800, (0.5, 0.125, 0.375), seed=3)).all()
    assert (codes != split_users(800, (0.5, 0.125, 0.375), seed=4)).any()


def test_trivial_feature_precision_splits_ties():
    shown = np.array([[0, 1, 2], [0, 1, 2]])
    click = np.array([2, 0])
    value = np.array([1.0, 1.0, 5.0, np.nan])  # item 3 = padding
    out = trivial_feature_precision(shown, click, value)
    assert out["highest"] == pytest.approx(0.5)  # row 0: hit; row 1: miss
    assert out["lowest"] == pytest.approx(0.25)  # row 1: tie of two → 1/2
    assert out["chance"] == pytest.approx(1 / 3)


START = 880_000_000
"""Epoch seconds in 1997, when MovieLens-100k was collected (1970 dates are invalid)."""


def _write_movielens(folder):
    folder.mkdir()
    rows = []
    for u in range(8):
        for j in range(6):
            rows.append(f"{u + 1}\t{(u * 3 + j) % 12 + 1}\t4\t{START + 10 * j + u}")
    rows.insert(5, f"3\tnot-an-item\t4\t{START + 234}")  # line 6: a bad item id
    (folder / "u.data").write_text("\n".join(rows) + "\n")
    genres = ["0"] * 19
    items = []
    for i in range(1, 13):
        flags = genres.copy()
        flags[i % 19] = "1"
        date = "" if i == 12 else f"01-Jan-{1980 + i}"
        items.append(f"{i}|Movie {i} ({1980 + i})|{date}||http://x|" + "|".join(flags))
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")


def test_movielens_build_counts_every_row_and_round_trips(tmp_path):
    _write_movielens(tmp_path / "ml")
    config = DisplaySetConfig(
        source="movielens", input_path=str(tmp_path / "ml"), output_path=str(tmp_path / "out"),
        set_size=4, history_len=3, max_invalid_fraction=0.05,
    )  # fmt: skip
    meta = build_display_sets(config).meta
    rows = meta["rows"]
    assert rows["input"] == 49 and rows["dropped"]["invalid_item_id"] == 1
    assert rows["kept"] + rows["dropped_total"] == rows["input"]
    assert meta["drop_examples"]["invalid_item_id"]["line"] == 6
    assert meta["n_items"] == 12 and meta["set_size"] == 4
    assert sum(s["records"] for s in meta["splits"].values()) == rows["kept"]
    assert [meta["splits"][s]["users"] for s in ("train", "val", "test")] == [4, 1, 3]
    assert set(meta["checks"]["release_year"]) == {"chance", "highest", "lowest"}
    data = load_display_sets(tmp_path / "out")
    assert data.feature_names[-2:] == ["year", "year_missing"]
    assert data.item_features.shape == (13, 21) and not data.item_features[12].any()
    assert data.item_features[11, -1] == 1.0  # movie 12 has no date
    train = data.splits["train"]
    assert train.shown.shape[1] == 4 and train.history.shape[1] == 3
    # a user's first page view has an empty history, the next one holds the first click
    items = pq.read_table(tmp_path / "out" / "items.parquet").column("raw_item_id").to_pylist()
    first = np.flatnonzero(train.user == train.user[0])
    assert (train.history[first[0]] == 12).all()
    clicked0 = train.shown[first[0], train.click[first[0]]]
    assert train.history[first[1], -1] == clicked0 and items[clicked0].isdigit()


def test_too_many_bad_rows_fail_naming_file_line_and_column(tmp_path):
    _write_movielens(tmp_path / "ml")
    config = DisplaySetConfig(
        source="movielens", input_path=str(tmp_path / "ml"), output_path=str(tmp_path / "out"),
        set_size=4,
    )  # fmt: skip
    with pytest.raises(InvalidValuesError, match=r"u\.data:6, column 'item_id'"):
        build_display_sets(config)


def _write_mind(folder):
    folder.mkdir()
    behaviors = [
        "I1\tU1\t11/15/2019 10:22:32 AM\tN1 N2\tN3-1 N4-0 N5-1",
        "I2\tU2\t11/15/2019 9:00:00 AM\t\tN3-0 N4-0",
        "I3\tU1\t11/15/2019 11:00:00 AM\tN1 N2\tN4-1 N6-0",
        "I4\tU2\t11/15/2019 9:30:00 AM\t\tN6-1 N3-x",  # line 4: bad token
        "I5\tU3\tyesterday\t\tN3-1",  # line 5: bad time
    ]
    (folder / "behaviors.tsv").write_text("\n".join(behaviors) + "\n")
    news = [
        'N1\tnews\tpolitics\tA "quoted" title\tabstract\turl\t[]\t[]',
        "N2\tsports\tsoccer\tt\ta\tu\t[]\t[]",
        "N3\tnews\tworld\tt\ta\tu\t[]\t[]",
        "N4\tsports\tgolf\tt\ta\tu\t[]\t[]",
        "N5\tfood\tcooking\tt\ta\tu\t[]\t[]",
        "N6\tnews\tworld\tt\ta\tu\t[]\t[]",
    ]
    (folder / "news.tsv").write_text("\n".join(news) + "\n")


def test_mind_impressions_become_one_record_per_click_or_one_no_click(tmp_path):
    _write_mind(tmp_path / "mind")
    config = DisplaySetConfig(
        source="mind", input_path=str(tmp_path / "mind"), output_path=str(tmp_path / "out"),
        history_len=4, max_invalid_fraction=0.5, split_fractions=(1.0, 0.0, 0.0),
    )  # fmt: skip
    meta = build_display_sets(config).meta
    assert meta["rows"]["input"] == 5 and meta["rows"]["kept"] == 3
    assert meta["rows"]["dropped"]["invalid_impression"] == 1
    assert meta["rows"]["dropped"]["invalid_timestamp"] == 1
    assert meta["drop_examples"]["invalid_impression"]["line"] == 4
    data = load_display_sets(tmp_path / "out")
    raw = pq.read_table(tmp_path / "out" / "items.parquet").column("raw_item_id").to_pylist()
    code = {r: i for i, r in enumerate(raw)}
    pad = data.splits["train"].pad_id
    table = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()

    def names(ids):
        return [raw[i] if i != pad else "-" for i in ids]

    records = [(names(r["history"]), names(r["shown"]), r["click"]) for r in table]
    assert (["-", "-", "N1", "N2"], ["N3", "N4", "N5"], 0) in records
    assert (["-", "N1", "N2", "N3"], ["N3", "N4", "N5"], 2) in records
    assert (["N1", "N2", "N3", "N5"], ["N4", "N6", "-"], 0) in records
    assert (["-", "-", "-", "-"], ["N3", "N4", "-"], -1) in records  # U2: no click
    assert len(records) == 4
    topics = data.feature_names
    n3 = data.item_features[code["N3"]]
    assert n3[topics.index("topic_news")] == 1 and n3[topics.index("subtopic_world")] == 1
    assert n3.sum() == 2
    assert meta["checks"]["no_click_fraction"] == pytest.approx(0.25)


def test_generic_impressions_reject_a_click_that_was_not_shown(tmp_path):
    folder = tmp_path / "imp"
    folder.mkdir()
    (folder / "log.csv").write_text(
        "user_id,timestamp,shown,clicked\n"
        "a,2024-01-01T00:00:00Z,x y z,y\n"
        "a,2024-01-01T00:01:00Z,x w,\n"
        "b,2024-01-01T00:02:00Z,x y,q\n"  # line 4: q was not shown
    )
    config = DisplaySetConfig(
        source="impressions", input_path=str(folder), output_path=str(tmp_path / "out"),
        max_invalid_fraction=0.5, split_fractions=(1.0, 0.0, 0.0),
    )  # fmt: skip
    meta = build_display_sets(config).meta
    assert meta["rows"]["dropped"]["invalid_impression"] == 1
    assert meta["drop_examples"]["invalid_impression"] == {
        "file": str(folder / "log.csv"), "line": 4, "value": "x y"
    }  # fmt: skip
    train = load_display_sets(tmp_path / "out").splits["train"]
    assert train.click.tolist() == [1, -1]
    assert train.history[1, -1] == train.shown[0, 1]  # the click on y is the next history
    saved = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert saved["records"] == 2


def test_click_logs_parse_as_prepare_does(tmp_path):
    # The rules of `recrl prepare`: 1970 is outside --time-range, a repeat is a duplicate.
    _write_movielens(tmp_path / "ml")
    with open(tmp_path / "ml" / "u.data", "a") as f:
        f.write("1\t5\t4\t1000\n")  # line 50: epoch seconds of 1970
        f.write(f"1\t1\t4\t{START}\n")  # line 51: user 1 rated item 1 at START before
    config = DisplaySetConfig(
        source="movielens", input_path=str(tmp_path / "ml"), output_path=str(tmp_path / "out"),
        set_size=4, max_invalid_fraction=0.05,
    )  # fmt: skip
    meta = build_display_sets(config).meta
    assert meta["rows"]["input"] == 51
    assert meta["rows"]["dropped"]["invalid_timestamp"] == 1
    assert meta["rows"]["dropped"]["duplicate_event"] == 1
    assert meta["drop_examples"]["invalid_timestamp"]["line"] == 50


def test_impression_timestamps_have_one_format_for_all_files(tmp_path):
    folder = tmp_path / "imp"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "user_id,timestamp,shown,clicked\n"
        "a,2024-01-01T00:00:00Z,x y,y\n"
        "a,2024-01-01T00:01:00Z,x w,x\n"
        "b,2024-01-01T00:02:00Z,x y,\n"
    )
    # Epoch seconds are plausible, but the input's one format is ISO-8601 (3 votes to 1).
    (folder / "b.csv").write_text("user_id,timestamp,shown,clicked\nc,1704067200,x y,x\n")
    config = DisplaySetConfig(
        source="impressions", input_path=str(folder), output_path=str(tmp_path / "out"),
        max_invalid_fraction=0.5, split_fractions=(1.0, 0.0, 0.0),
    )  # fmt: skip
    meta = build_display_sets(config).meta
    assert meta["rows"]["dropped"]["invalid_timestamp"] == 1
    assert meta["drop_examples"]["invalid_timestamp"] == {
        "file": str(folder / "b.csv"), "line": 2, "value": "1704067200"
    }  # fmt: skip
    assert meta["rows"]["kept"] == 3
