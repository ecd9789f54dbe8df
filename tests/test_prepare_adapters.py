"""Each source adapter on a few rows in its real format, read with line numbers, then parsed.

The rows are written by the tests in the exact layout of the public files (RecSys Challenge
2015, RetailRocket, MovieLens 100K/1M/25M, Open Bandit Dataset, generic input schema).
"""

from __future__ import annotations

import calendar
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from recrl.pipelines.prepare import reading, schema
from recrl.pipelines.prepare.adapters import ADAPTERS
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.local import parse_local
from recrl.pipelines.prepare.reading import read_local

KEPT = schema.KEPT
MALFORMED = schema.REASON_CODE["malformed_row"]
INVALID_EVENT = schema.REASON_CODE["invalid_event"]
INVALID_ITEM = schema.REASON_CODE["invalid_item_id"]
EXCLUDED = schema.REASON_CODE["excluded_event"]
INVALID_TIME = schema.REASON_CODE["invalid_timestamp"]


def utc_ns(*fields: int, ns: int = 0) -> int:
    """Exact ns since the epoch of a UTC (year, month, day, hour, minute, second)."""
    return calendar.timegm((*fields, 0, 0, 0)) * 10**9 + ns


def write(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines))
    return folder


def parse(source: str, path: Path, **settings) -> tuple[list, list[dict]]:
    """The pipeline's parse stage without Ray (`local.parse_local`): find the files, decide
    the timestamp format once, read, map and parse every block, mark duplicates; returns
    the sources and the parsed rows ordered by (file, line)."""
    config = PrepareConfig(source=source, input_path=str(path), output_path="unused", **settings)
    result = parse_local(config)
    return result.sources, result.events.to_pylist()


def column(rows: list[dict], name: str) -> list:
    return [r[name] for r in rows]


# --- YooChoose / RecSys Challenge 2015 ---------------------------------------------------

CLICKS = [
    "1,2014-04-07T10:51:09.277Z,214536502,0",
    "1,2014-04-07T10:54:09.868Z,214536500,0",
    "2,2014-04-07T13:56:37.614Z,214662742,S",
]
BUYS = ["420374,2014-04-06T18:44:58.314Z,214537888,12462,1"]
CLICKS_HEADER = "session_id,timestamp,item_id,category"
BUYS_HEADER = "session_id,timestamp,item_id,price,quantity"


@pytest.mark.parametrize("header", [True, False], ids=["header", "raw-challenge-files"])
def test_yoochoose_clicks_and_buys(tmp_path, header):
    if header:
        names = ["sample_clicks.csv", "sample_buys.csv"]
        write(tmp_path, names[0], [CLICKS_HEADER, *CLICKS])
        write(tmp_path, names[1], [BUYS_HEADER, *BUYS])
    else:
        names = ["yoochoose-clicks.dat", "yoochoose-buys.dat"]
        write(tmp_path, names[0], CLICKS)
        write(tmp_path, names[1], BUYS)
    sources, rows = parse("yoochoose", tmp_path)

    assert [(Path(s.path).name, s.role, s.has_header) for s in sources] == [
        (names[0], "clicks", header),
        (names[1], "buys", header),
    ]
    first = 2 if header else 1
    assert column(rows, schema.FILE) == [0, 0, 0, 1]
    assert column(rows, schema.LINE) == [first, first + 1, first + 2, first]
    assert column(rows, schema.SESSION_ID) == [1, 1, 2, 420374]
    assert column(rows, schema.ITEM_ID) == [214536502, 214536500, 214662742, 214537888]
    assert column(rows, schema.TIMESTAMP) == [
        utc_ns(2014, 4, 7, 10, 51, 9, ns=277_000_000),
        utc_ns(2014, 4, 7, 10, 54, 9, ns=868_000_000),
        utc_ns(2014, 4, 7, 13, 56, 37, ns=614_000_000),
        utc_ns(2014, 4, 6, 18, 44, 58, ns=314_000_000),
    ]
    assert column(rows, schema.IS_BUY) == [False, False, False, True]
    assert column(rows, schema.DROP) == [KEPT] * 4
    assert column(rows, schema.BAD) == [None] * 4


@pytest.mark.parametrize("header", [True, False])
def test_malformed_row_keeps_its_line_and_later_rows_keep_theirs(tmp_path, header):
    lines = [
        CLICKS[0],
        "1,2014-04-07T10:54:09.868Z",  # too few fields
        CLICKS[1],
        "2,2014-04-07T13:56:37.614Z,214662742,S,extra",  # too many fields
        CLICKS[2],
        "3,2014-04-07T13:56:37.614Z,abc,0",  # right shape, bad item
        "3,2014-04-07T13:57:37.614Z,214662742,0",
    ]
    write(tmp_path, "clicks.dat", [CLICKS_HEADER, *lines] if header else lines)
    _, rows = parse("yoochoose", tmp_path)
    offset = 1 if header else 0
    assert column(rows, schema.LINE) == [n + offset for n in range(1, 8)]
    assert column(rows, schema.DROP) == [KEPT, MALFORMED, KEPT, MALFORMED, KEPT, INVALID_ITEM, KEPT]
    assert column(rows, schema.BAD) == [None, lines[1], None, lines[3], None, "abc", None]
    assert column(rows, schema.ITEM_ID) == [214536502, 0, 214536500, 0, 214662742, 0, 214662742]
    assert column(rows, schema.SESSION_ID)[-1] == 3


class _SmallBlocks:
    """`pyarrow.csv` with 4 KiB read blocks, so a small file spans many reader blocks."""

    def __getattr__(self, name):
        return getattr(pacsv, name)

    @staticmethod
    def ReadOptions(**options):  # stands in for pyarrow.csv.ReadOptions
        return pacsv.ReadOptions(**{**options, "block_size": 4096})


@pytest.mark.parametrize("header", [True, False])
def test_line_numbers_stay_exact_across_reader_blocks(tmp_path, monkeypatch, header):
    """The reader parses the file in blocks and reports malformed rows ahead of the good
    rows of their block; bad rows at the start, around block boundaries and at the very
    end must not shift any line number."""
    monkeypatch.setattr(reading, "pacsv", _SmallBlocks())
    n = 3000  # ~100 KiB: about 25 blocks of 4 KiB
    bad = {1, 2, 5, 100, 101, 102, 1000, 2998, 3000} if not header else {2, 5, 1000, 3000}
    lines = ["x,y" if i in bad else f"{i},2014-04-07T10:51:09.277Z,{i},0" for i in range(1, n + 1)]
    if header:
        lines[0] = CLICKS_HEADER
    else:  # a headerless file's first line must be a good row (it is checked for shape)
        bad -= {1}
        lines[0] = "1,2014-04-07T10:51:09.277Z,1,0"
    write(tmp_path, "yoochoose-clicks.dat", lines)
    [source] = ADAPTERS["yoochoose"].find(str(tmp_path))
    assert source.has_header == header
    tables = read_local([source], [0])
    assert sum(t[schema.DROP][0].as_py() == KEPT for t in tables if t.num_rows) > 10
    got = pa.concat_tables(tables)
    line = got[schema.LINE].to_numpy()
    drop = got[schema.DROP].to_numpy()
    first = 2 if header else 1
    assert sorted(line.tolist()) == list(range(first, n + 1))
    assert sorted(line[drop == MALFORMED].tolist()) == sorted(bad)
    assert got[schema.BAD].to_numpy(zero_copy_only=False)[drop == MALFORMED].tolist() == [
        "x,y"
    ] * len(bad)
    good = drop == KEPT
    session = got[schema.SESSION_ID].to_numpy(zero_copy_only=False)[good].astype(np.int64)
    assert (session == line[good]).all()  # each good row's session id is its line number


# --- RetailRocket -------------------------------------------------------------------------

RETAILROCKET = [
    "timestamp,visitorid,event,itemid,transactionid",
    "1433221332117,257597,view,355908,",
    "1433224214164,992329,addtocart,248676,",
    "1433223203944,599528,transaction,356475,4000",
    "1433223203944,599528,share,356475,",
]


def test_retailrocket_addtocart_is_the_purchase_by_default(tmp_path):
    write(tmp_path, "events.csv", RETAILROCKET)
    sources, rows = parse("retailrocket", tmp_path)
    assert [(s.role, s.has_header) for s in sources] == [("events", True)]
    assert column(rows, schema.LINE) == [2, 3, 4, 5]
    assert column(rows, schema.SESSION_ID) == [257597, 992329, 599528, 599528]
    assert column(rows, schema.ITEM_ID) == [355908, 248676, 356475, 356475]
    # Milliseconds scaled exactly (float64 would give ...116999936 for the first one).
    assert column(rows, schema.TIMESTAMP) == [
        1433221332117_000000,
        1433224214164_000000,
        1433223203944_000000,
        1433223203944_000000,
    ]
    assert column(rows, schema.IS_BUY) == [False, True, False, False]
    assert column(rows, schema.DROP) == [KEPT, KEPT, EXCLUDED, INVALID_EVENT]
    assert column(rows, schema.BAD)[3] == "share"


def test_retailrocket_transaction_as_purchase_excludes_addtocart(tmp_path):
    write(tmp_path, "events.csv", RETAILROCKET[:4])
    _, rows = parse("retailrocket", tmp_path, retailrocket_purchase="transaction")
    assert column(rows, schema.DROP) == [KEPT, EXCLUDED, KEPT]
    assert column(rows, schema.IS_BUY) == [False, False, True]


def test_gzipped_retailrocket_events(tmp_path):
    with gzip.open(tmp_path / "events.csv.gz", "wt") as f:
        f.write("\n".join(RETAILROCKET[:3]) + "\n")
    _, rows = parse("retailrocket", tmp_path)
    assert column(rows, schema.SESSION_ID) == [257597, 992329]
    assert column(rows, schema.LINE) == [2, 3]


# --- MovieLens ----------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [None, 4])
def test_movielens_100k_u_data(tmp_path, threshold):
    write(
        tmp_path,
        "u.data",
        ["196\t242\t3\t881250949", "186\t302\t4\t891717742", "22\t377\t1\t878887116"],
    )
    sources, rows = parse("movielens", tmp_path, movielens_positive_threshold=threshold)
    assert [(s.role, s.has_header) for s in sources] == [("u_data", False)]
    assert column(rows, schema.LINE) == [1, 2, 3]
    assert column(rows, schema.SESSION_ID) == [196, 186, 22]
    assert column(rows, schema.ITEM_ID) == [242, 302, 377]
    assert column(rows, schema.TIMESTAMP) == [
        881250949 * 10**9,
        891717742 * 10**9,
        878887116 * 10**9,
    ]
    assert column(rows, schema.IS_BUY) == [False, threshold is not None, False]
    assert column(rows, schema.DROP) == [KEPT] * 3


def test_movielens_1m_ratings_dat_with_threshold(tmp_path):
    write(
        tmp_path,
        "ratings.dat",
        [
            "1::1193::5::978300760",
            "1::661::3::978302109",
            "2::3068::4::978299000",
            "2::1::?::978299001",
        ],
    )
    sources, rows = parse("movielens", tmp_path, movielens_positive_threshold=4)
    assert [(s.role, s.has_header) for s in sources] == [("ratings_dat", False)]
    assert column(rows, schema.SESSION_ID) == [1, 1, 2, 2]
    assert column(rows, schema.ITEM_ID) == [1193, 661, 3068, 1]
    assert column(rows, schema.TIMESTAMP)[:3] == [
        978300760 * 10**9,
        978302109 * 10**9,
        978299000 * 10**9,
    ]
    assert column(rows, schema.IS_BUY) == [True, False, True, False]
    assert column(rows, schema.DROP) == [KEPT, KEPT, KEPT, INVALID_EVENT]
    assert column(rows, schema.BAD)[3] == "rating=?"
    assert column(rows, schema.LINE) == [1, 2, 3, 4]


def test_movielens_25m_ratings_csv(tmp_path):
    write(
        tmp_path,
        "ratings.csv",
        ["userId,movieId,rating,timestamp", "1,296,5.0,1147880044", "1,306,3.5,1147868817"],
    )
    _, rows = parse("movielens", tmp_path, movielens_positive_threshold=4)
    assert column(rows, schema.SESSION_ID) == [1, 1]
    assert column(rows, schema.ITEM_ID) == [296, 306]
    assert column(rows, schema.IS_BUY) == [True, False]
    assert column(rows, schema.LINE) == [2, 3]


# --- Open Bandit Dataset --------------------------------------------------------------------

OPEN_BANDIT_HEADER = (
    ",timestamp,item_id,position,click,propensity_score,"
    "user_feature_0,user_feature_1,user_feature_2,user_feature_3,"
    "user-item_affinity_0,user-item_affinity_1,user-item_affinity_2"
)


def test_open_bandit_clicks_are_events_and_impressions_without_click_are_excluded(tmp_path):
    write(
        tmp_path,
        "all.csv",
        [
            OPEN_BANDIT_HEADER,
            "0,2019-11-24 00:00:34.762830+00:00,14,3,1,0.0125,81ce,03a5,c2e4,f975,0.0,0.0,0.0",
            "1,2019-11-24 00:00:53.965051+00:00,7,1,0,0.0125,81ce,03a5,2723,c39b,0.0,1.0,0.0",
            "2,2019-11-24 00:01:02.000001+00:00,70,2,1,0.0125,81ce,03a5,c2e4,f975,0.0,0.0,0.0",
        ],
    )
    sources, rows = parse("open_bandit", tmp_path)
    assert [(s.role, s.has_header) for s in sources] == [("impressions", True)]
    assert column(rows, schema.LINE) == [2, 3, 4]
    assert column(rows, schema.SESSION_ID) == [
        "81ce|03a5|c2e4|f975",
        "81ce|03a5|2723|c39b",
        "81ce|03a5|c2e4|f975",
    ]
    assert column(rows, schema.ITEM_ID) == [14, 7, 70]
    assert column(rows, schema.TIMESTAMP) == [
        utc_ns(2019, 11, 24, 0, 0, 34, ns=762_830_000),
        utc_ns(2019, 11, 24, 0, 0, 53, ns=965_051_000),
        utc_ns(2019, 11, 24, 0, 1, 2, ns=1_000),
    ]
    assert column(rows, schema.DROP) == [KEPT, EXCLUDED, KEPT]
    assert column(rows, schema.IS_BUY) == [False, False, False]


# --- generic input schema -----------------------------------------------------------------


def test_generic_csv_with_string_ids_and_one_timestamp_format(tmp_path):
    write(
        tmp_path,
        "events.csv",
        [
            "session_id,timestamp,item_id,event",
            "u1,2014-04-07T10:51:09.277Z,sku-1,click",
            f"u1,{utc_ns(2014, 4, 7, 10, 52, 0) + 5},sku-2,purchase",
            "42,2014-04-07T10:53:00Z,7,Click",
            "u2,2014-04-07T10:54:00Z,sku-1,view",
        ],
    )
    _, rows = parse("generic", tmp_path)
    assert column(rows, schema.SESSION_ID) == ["u1", "u1", "42", "u2"]
    assert column(rows, schema.ITEM_ID) == ["sku-1", "sku-2", "7", "sku-1"]
    # ISO-8601 is the column's format (3 of 4 values): the ns value is invalid, not mixed in.
    assert column(rows, schema.TIMESTAMP) == [
        utc_ns(2014, 4, 7, 10, 51, 9, ns=277_000_000),
        0,
        utc_ns(2014, 4, 7, 10, 53, 0),
        utc_ns(2014, 4, 7, 10, 54, 0),
    ]
    assert column(rows, schema.IS_BUY) == [False, True, False, False]
    assert column(rows, schema.DROP) == [KEPT, INVALID_TIME, KEPT, INVALID_EVENT]
    assert column(rows, schema.LINE) == [2, 3, 4, 5]


def test_generic_parquet_with_int_ids_and_ns_or_timestamp_columns(tmp_path):
    t0 = utc_ns(2014, 4, 7, 10, 51, 9, ns=277_000_000)
    pq.write_table(
        pa.table(
            {
                "session_id": pa.array([1, 1, 2], pa.int64()),
                "timestamp": pa.array([t0, t0 + 1, t0 + 2], pa.int64()),
                "item_id": pa.array([10, 11, 10], pa.int64()),
                "event": ["click", "purchase", "click"],
            }
        ),
        tmp_path / "a.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "session_id": ["s9"],
                "timestamp": pa.array([t0 // 1000], pa.timestamp("us", tz="UTC")),
                "item_id": ["10"],
                "event": ["purchase"],
            }
        ),
        tmp_path / "b.parquet",
    )
    sources, rows = parse("generic", tmp_path)
    assert [(Path(s.path).name, s.role, s.layout) for s in sources] == [
        ("a.parquet", "parquet", None),
        ("b.parquet", "parquet", None),
    ]
    assert column(rows, schema.FILE) == [0, 0, 0, 1]
    assert column(rows, schema.LINE) == [1, 2, 3, 1]  # parquet: 1-based row number
    assert column(rows, schema.SESSION_ID) == ["1", "1", "2", "s9"]
    assert column(rows, schema.ITEM_ID) == ["10", "11", "10", "10"]
    assert column(rows, schema.TIMESTAMP) == [t0, t0 + 1, t0 + 2, t0]
    assert column(rows, schema.IS_BUY) == [False, True, False, True]
    assert column(rows, schema.DROP) == [KEPT] * 4


# --- The registry ---------------------------------------------------------------------------


def test_the_registry_is_the_one_list_of_sources():
    """`adapters.ADAPTERS` alone names the sources: the config's names are its keys, each
    adapter is registered under its own name with a help line, every source module of the
    package is registered (a forgotten registry line fails here), and a name outside it is
    a one-line error that lists the registered ones."""
    import importlib
    import pkgutil

    from recrl.pipelines.prepare import adapters
    from recrl.pipelines.prepare.config import SOURCES

    assert tuple(ADAPTERS) == SOURCES
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name
        assert adapter.description.strip() and "\n" not in adapter.description, name
    modules = [m.name for m in pkgutil.iter_modules(adapters.__path__) if m.name != "base"]
    registered = [importlib.import_module(f"{adapters.__name__}.{m}").ADAPTER for m in modules]
    assert sorted(a.name for a in registered) == sorted(SOURCES)
    assert all(ADAPTERS[a.name] is a for a in registered)
    for name in SOURCES:
        assert PrepareConfig(source=name, input_path="in", output_path="out").source == name
    with pytest.raises(ValueError) as refused:
        PrepareConfig(source="lastfm", input_path="in", output_path="out")
    assert str(refused.value) == f"source must be one of {', '.join(SOURCES)}; got 'lastfm'"
