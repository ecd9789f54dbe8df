"""Hostile inputs to `recrl prepare`: every case either fails with one
``recrl: error:`` line naming the place, or is accepted with exact per-reason counts
(input rows = kept + dropped per reason).

Most cases stop before Ray starts (settings, encoding, empty files) or are checked on the
parse stage without Ray (`local.parse_local`, the same decisions as the pipeline); the few
marked ``ray`` run the whole command on a few dozen rows.
"""

from __future__ import annotations

import calendar
import json
import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recrl.pipelines.errors import SettingError
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.config import PrepareConfig
from recrl.pipelines.prepare.errors import InvalidValuesError
from recrl.pipelines.prepare.local import parse_local
from recrl.pipelines.prepare.pipeline import _check_invalid_values
from recrl.pipelines.prepare.reading import SourceFile
from recrl.pipelines.prepare.stages import ParsedStats

from tests.hostile import assert_user_error, run_recrl, tree_digest

GENERIC_HEADER = "session_id,timestamp,item_id,event"


def utc_ns(*fields: int) -> int:
    return calendar.timegm((*fields, 0, 0, 0)) * 10**9


T0 = utc_ns(2014, 4, 7, 10, 51, 9)
ISO0 = "2014-04-07T10:51:09Z"


def write(folder: Path, name: str, lines: list[str], *, newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes("".join(line + newline for line in lines).encode())
    return folder / name


def parse(source: str, path: Path, **settings):
    """Parse without Ray; checks that every input row is kept or dropped for one reason."""
    config = PrepareConfig(source=source, input_path=str(path), output_path="unused", **settings)
    result = parse_local(config)
    drops = result.drops()
    kept = result.events.num_rows - sum(drops.values())
    assert kept == int((result.events.column(schema.DROP).to_numpy() == schema.KEPT).sum())
    return result, drops, kept


def generic_rows(n_sessions: int, per_session: int, stamp) -> list[str]:
    """Rows ``s{k},stamp(k, j),i{j},click``: distinct sessions, items and times."""
    return [f"s{k},{stamp(k, j)},i{j},click" for k in range(n_sessions) for j in range(per_session)]


def prepare_args(source: str, input_path: Path, output: Path, *extra: str) -> list[str]:
    return ["-q", "prepare", "--source", source, "--input", input_path, "--output", output, *extra]


# --- timestamps ----------------------------------------------------------------------


def test_mixed_timestamp_formats_keep_only_the_majority_format(tmp_path):
    """The hostile trial: ISO-8601, epoch ns, ``2014/04/06 01:31:00`` and epoch seconds in
    one column. ISO has the majority; every other value is invalid, none re-interpreted."""
    rows = generic_rows(5, 4, lambda k, j: f"2014-04-07T10:{k:02d}:{j:02d}Z")
    rows += [
        f"x1,{T0},i1,click",
        "x2,2014/04/06 01:31:00,i1,click",
        f"x3,{T0 // 10**9},i1,click",
    ]
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    result, drops, kept = parse("generic", path)
    assert result.timestamp_format == "iso"
    assert drops == Counter(invalid_timestamp=3)
    assert kept == 20
    bad = result.events.filter(pa.compute.equal(result.events[schema.DROP], 3))
    assert bad[schema.BAD].to_pylist() == [str(T0), "2014/04/06 01:31:00", str(T0 // 10**9)]


@pytest.mark.parametrize(("unit", "scale"), [("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)])
def test_epoch_unit_is_detected_from_the_magnitude(tmp_path, unit, scale):
    rows = generic_rows(3, 3, lambda k, j: (T0 + (k * 10 + j) * 10**9) // scale)
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    result, drops, kept = parse("generic", path)
    assert result.timestamp_format == unit
    assert drops == Counter() and kept == 9
    assert result.events[schema.TIMESTAMP].to_pylist()[:2] == [T0, T0 + 10**9]


def test_timestamp_unit_override_is_obeyed_and_misfits_are_invalid(tmp_path):
    rows = generic_rows(2, 3, lambda k, j: (T0 + (k * 10 + j) * 10**9) // 10**6)  # ms
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    result, drops, _ = parse("generic", path, timestamp_unit="ms")
    assert result.timestamp_format == "ms" and drops == Counter()
    # Read as seconds, milliseconds since 1970 lie in the year ~46,000: all invalid.
    result, drops, kept = parse("generic", path, timestamp_unit="s")
    assert result.timestamp_format == "s"
    assert drops == Counter(invalid_timestamp=6) and kept == 0


def test_timestamps_outside_the_plausible_years_are_invalid_never_wrapped(tmp_path):
    values = [
        "0001-01-01T00:00:00Z",
        "2262-04-12T00:00:00Z",
        "1989-12-31T23:59:59Z",
        "2101-01-01T00:00:00Z",
        "1990-01-01T00:00:00Z",
        "2100-12-31T23:59:59Z",
        "2014-04-07T10:51:09",
    ]
    rows = [f"s{k},{v},i1,click" for k, v in enumerate(values)]
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    result, drops, kept = parse("generic", path)
    assert drops == Counter(invalid_timestamp=4) and kept == 3
    assert result.events[schema.TIMESTAMP].to_pylist() == [
        0,
        0,
        0,
        0,
        utc_ns(1990, 1, 1, 0, 0, 0),
        utc_ns(2100, 12, 31, 23, 59, 59),
        T0,
    ]


def test_time_range_widens_the_plausible_years(tmp_path):
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, "s1,1975-05-05T00:00:00Z,i1,click"])
    _, drops, _ = parse("generic", path)
    assert drops == Counter(invalid_timestamp=1)
    _, drops, kept = parse("generic", path, time_range=(1971, 2100))
    assert drops == Counter() and kept == 1
    _, drops, kept = parse("generic", path, time_range=(1970, 2100), timestamp_unit="iso")
    assert drops == Counter() and kept == 1


def test_seconds_are_never_read_as_milliseconds_when_the_range_reaches_1970(tmp_path):
    """From 1970 on, 1400000000 fits seconds (2014) and milliseconds (January 1970): the
    unit cannot be detected, so the run needs --timestamp-unit instead of a vote that one
    stray millisecond value would tip."""
    rows = [f"s{k},1400000000,i{k},click" for k in range(5)] + ["s9,1400000000000,i9,click"]
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    with pytest.raises(SettingError, match="--timestamp-unit"):
        parse("generic", path, time_range=(1970, 2100))
    _, drops, kept = parse("generic", path, time_range=(1970, 2100), timestamp_unit="s")
    assert kept == 5 and drops == Counter(invalid_timestamp=1)  # 1.4e12 s is after 2100


def test_a_source_with_a_fixed_format_refuses_other_formats(tmp_path):
    """YooChoose timestamps are ISO-8601: an epoch value there is invalid, not guessed."""
    write(
        tmp_path,
        "clicks.dat",
        [f"1,{ISO0},214536502,0", f"1,{T0},214536500,0", "2,1396867869,214536500,0"],
    )
    result, drops, kept = parse("yoochoose", tmp_path)
    assert result.timestamp_format == "iso"
    assert drops == Counter(invalid_timestamp=2) and kept == 1


def test_integer_parquet_timestamps_out_of_range_are_invalid(tmp_path):
    pq.write_table(
        pa.table(
            {
                "session_id": ["a", "a", "b"],
                "timestamp": pa.array([T0, T0 + 1, 9_000_000_000_000_000_000], pa.int64()),
                "item_id": ["1", "2", "3"],
                "event": ["click"] * 3,
            }
        ),
        tmp_path / "log.parquet",
    )
    result, drops, kept = parse("generic", tmp_path)
    assert result.timestamp_format == "ns"
    assert drops == Counter(invalid_timestamp=1) and kept == 2


def test_retailrocket_fractional_milliseconds_and_junk(tmp_path):
    write(
        tmp_path,
        "events.csv",
        [
            "timestamp,visitorid,event,itemid,transactionid",
            "1433221332117,257597,view,355908,",
            "1433221332117.5,257597,view,355909,",
            "1433221332,257597,view,355910,",  # seconds in a ms column: 1970
            "later,257597,view,355911,",
        ],
    )
    result, drops, kept = parse("retailrocket", tmp_path)
    assert result.timestamp_format == "ms"
    assert drops == Counter(invalid_timestamp=2) and kept == 2


# --- ids -----------------------------------------------------------------------------


def test_null_spellings_are_invalid_session_and_item_ids(tmp_path):
    nulls = ["nan", "NaN", "null", "None", "", "  "]
    rows = [f"{v},{ISO0},i1,click" for v in nulls] + [f"s1,{ISO0},{v},click" for v in nulls]
    rows.append(f"s1,{ISO0},i1,click")
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    _, drops, kept = parse("generic", path)
    assert drops == Counter(invalid_session_id=6, invalid_item_id=6) and kept == 1


def test_nan_ids_in_an_integer_source_are_invalid(tmp_path):
    write(tmp_path, "clicks.dat", [f"nan,{ISO0},1,0", f"1,{ISO0},NaN,0", f"1,{ISO0},2,0"])
    _, drops, kept = parse("yoochoose", tmp_path)
    assert drops == Counter(invalid_session_id=1, invalid_item_id=1) and kept == 1


@pytest.mark.parametrize("source", ["yoochoose", "generic"])
def test_negative_ids_are_valid_ids_as_written(tmp_path, source):
    if source == "yoochoose":
        write(tmp_path, "clicks.dat", [f"-5,{ISO0},-7,0", f"5,{ISO0},7,0"])
    else:
        write(tmp_path, "log.csv", [GENERIC_HEADER, f"-5,{ISO0},-7,click", f"5,{ISO0},7,click"])
    result, drops, kept = parse(source, tmp_path)
    assert drops == Counter() and kept == 2
    sessions = [str(s) for s in result.events[schema.SESSION_ID].to_pylist()]
    assert sessions == ["-5", "5"]


# --- duplicates ----------------------------------------------------------------------


def test_exact_duplicates_within_a_file_are_dropped_keeping_the_first(tmp_path):
    rows = [
        f"s1,{ISO0},i1,click",
        f"s1,{ISO0},i1,click",
        f"s1,{ISO0},i1,purchase",  # another event: not a duplicate
        f"s1,{ISO0},i2,click",  # another item: not a duplicate
        f"s1,{ISO0},i1,click",
    ]
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *rows])
    result, drops, kept = parse("generic", path)
    assert drops == Counter(duplicate_event=2) and kept == 3
    assert result.events[schema.DROP].to_pylist() == [0, 9, 0, 0, 9]
    _, drops, kept = parse("generic", path, keep_duplicates=True)
    assert drops == Counter() and kept == 5


def test_duplicates_across_files_are_found(tmp_path):
    write(tmp_path, "a.csv", [GENERIC_HEADER, f"s1,{ISO0},i1,click", f"s2,{ISO0},i1,click"])
    write(tmp_path, "b.csv", [GENERIC_HEADER, f"s1,{ISO0},i1,click", f"s2,{ISO0},i2,click"])
    result, drops, kept = parse("generic", tmp_path)
    assert drops == Counter(duplicate_event=1) and kept == 3
    dup = result.events.filter(pa.compute.equal(result.events[schema.DROP], 9)).to_pylist()
    assert [(r[schema.FILE], r[schema.LINE]) for r in dup] == [(1, 2)]


# --- encodings and text layout ---------------------------------------------------------


def test_latin1_byte_is_one_error_line_naming_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_bytes(
        f"{GENERIC_HEADER}\ns1,{ISO0},i1,click\nca\xe9,{ISO0},i2,click\n".encode("latin-1")
    )
    out = tmp_path / "out"
    outcome = run_recrl(capsys, *prepare_args("generic", path, out))
    line = assert_user_error(outcome, f"{path}:3", "'session_id'", "0xe9", "--encoding")
    assert "Traceback" not in outcome.err and len(line) < 400
    assert tree_digest(out) == {}


def test_latin1_with_encoding_is_transcoded(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(f"{GENERIC_HEADER}\ncaf\xe9,{ISO0},i2,click\n".encode("latin-1"))
    result, drops, kept = parse("generic", path, encoding="latin-1")
    assert drops == Counter() and kept == 1
    assert result.events[schema.SESSION_ID].to_pylist() == ["café"]


def test_byte_order_mark_and_crlf_line_endings(tmp_path):
    path = tmp_path / "log.csv"
    body = f"{GENERIC_HEADER}\r\ns1,{ISO0},i1,click\r\ns1,{ISO0},i2,purchase\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    result, drops, kept = parse("generic", path)
    assert drops == Counter() and kept == 2
    assert result.events[schema.ITEM_ID].to_pylist() == ["i1", "i2"]
    assert result.events[schema.IS_BUY].to_pylist() == [False, True]
    assert result.events[schema.LINE].to_pylist() == [2, 3]


def test_quoted_delimiters_are_values_and_quoted_line_breaks_are_malformed(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        f'{GENERIC_HEADER}\n"s,1",{ISO0},i1,click\n"s\n2",{ISO0},i1,click\ns3,{ISO0},i1,click\n'
    )
    result, drops, kept = parse("generic", path)
    assert drops == Counter(malformed_row=1) and kept == 2
    rows = result.events.to_pylist()
    assert [(r[schema.SESSION_ID], r[schema.LINE]) for r in rows if r[schema.DROP] == 0] == [
        ("s,1", 2),
        ("s3", 5),  # the line after the two-line row keeps its real number
    ]


def test_stray_delimiter_is_a_malformed_row(tmp_path):
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, f"s1,{ISO0},i1,click,extra"])
    _, drops, kept = parse("generic", path)
    assert drops == Counter(malformed_row=1) and kept == 0


def test_empty_buys_file_is_accepted_with_a_notice(tmp_path, caplog):
    write(tmp_path, "clicks.dat", [f"1,{ISO0},214536502,0"])
    (tmp_path / "buys.dat").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        result, drops, kept = parse("yoochoose", tmp_path)
    assert [s.role for s in result.sources] == ["clicks"]
    assert "buys.dat is empty" in caplog.text
    assert drops == Counter() and kept == 1


def test_empty_required_file_is_an_error_before_ray(tmp_path, capsys):
    (tmp_path / "clicks.dat").write_bytes(b"")
    outcome = run_recrl(capsys, *prepare_args("yoochoose", tmp_path, tmp_path / "out"))
    assert_user_error(outcome, "clicks.dat", "empty")


def test_header_only_file_has_no_rows(tmp_path):
    path = write(tmp_path, "log.csv", [GENERIC_HEADER])
    result, drops, kept = parse("generic", path)
    assert result.events.num_rows == 0 and kept == 0 and drops == Counter()


# --- settings: refused before any work ---------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["--time-range", "2100", "1990"], ["--time-range", "2100 1990"]),
        (["--time-range", "1500", "2000"], ["--time-range", "1678"]),
        (["--encoding", "klingon"], ["--encoding", "klingon"]),
        (["--timestamp-unit", "fortnights"], ["--timestamp-unit", "fortnights"]),
    ],
)
def test_bad_reading_settings_are_one_line(tmp_path, capsys, extra, names):
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, f"s1,{ISO0},i1,click"])
    outcome = run_recrl(capsys, *prepare_args("generic", path, tmp_path / "out", *extra))
    assert_user_error(outcome, *names)
    assert tree_digest(tmp_path / "out") == {}


def test_help_lists_every_drop_reason(capsys):
    outcome = run_recrl(capsys, "prepare", "--help")
    assert outcome.code == 0
    for reason in schema.DROP_REASONS.values():
        assert reason in outcome.out


# --- the invalid fraction: all kinds together -------------------------------------------


def test_invalid_fraction_counts_every_kind_together():
    """0.9 % of each of five kinds is 4.5 % bad rows: above a 1 % limit."""
    stats = ParsedStats(rows=1000)
    for line, reason in enumerate(schema.INVALID_REASONS, start=2):
        stats.drops[reason] = 9
        stats.examples[reason] = (0, line * 10, f"bad {reason}")
    sources = [SourceFile("log.csv", "csv", None)]
    config = PrepareConfig(source="generic", input_path="log.csv", output_path="out")
    with pytest.raises(InvalidValuesError) as error:
        _check_invalid_values(stats, sources, config)
    message = str(error.value)
    assert "45 of 1000 rows (4.50%)" in message
    assert all(f"{reason} 9" in message for reason in schema.INVALID_REASONS)
    assert message.startswith("log.csv:20")  # the first bad row of any kind
    loose = PrepareConfig(
        source="generic", input_path="log.csv", output_path="out", max_invalid_fraction=0.05
    )
    _check_invalid_values(stats, sources, loose)  # a warning, not an error


# --- whole runs (Ray) --------------------------------------------------------------------


def _meta(out: Path) -> dict:
    return json.loads((out / "meta.json").read_text())


@pytest.mark.ray
def test_hostile_trial_end_to_end_counts_add_up(ray_session, tmp_path, capsys):
    """Mixed formats, nan ids and duplicates spread over two files: refused at the default
    limit (naming the first bad row), accepted with a looser one with exact counts."""
    a = generic_rows(10, 4, lambda k, j: f"2014-04-07T10:{k:02d}:{j:02d}Z")
    b = generic_rows(10, 4, lambda k, j: f"2014-04-08T10:{k:02d}:{j:02d}Z")
    b[0:3] = [f"s0,{T0},i0,click", f"nan,{ISO0},i0,click", "s1,2014/04/06 01:31:00,i0,click"]
    b += a[:5]  # five exact duplicates of rows of the other file
    write(tmp_path / "in", "a.csv", [GENERIC_HEADER, *a])
    write(tmp_path / "in", "b.csv", [GENERIC_HEADER, *b])
    out = tmp_path / "out"
    refused = run_recrl(capsys, *prepare_args("generic", tmp_path / "in", out, "--state-len", "2"))
    assert_user_error(refused, "b.csv:2", "'timestamp'", "3 of 85 rows", "invalid_session_id 1")
    outcome = run_recrl(
        capsys,
        *prepare_args(
            "generic", tmp_path / "in", out, "--state-len", "2", "--max-invalid-fraction", "0.05"
        ),
    )
    assert outcome.code == 0, outcome.err
    rows = _meta(out)["rows"]
    dropped = {k: v for k, v in rows["dropped"].items() if v}
    # Sessions s0 and s1 of b.csv lose a row each but keep 3 clicks (> 2).
    assert dropped == {"invalid_timestamp": 2, "invalid_session_id": 1, "duplicate_event": 5}
    assert rows["input"] == 85 and rows["kept"] == 77
    assert rows["input"] == rows["kept"] + rows["dropped_total"]
    assert _meta(out)["timestamp_format"]["format"] == "iso"
    assert "bad values in total" in outcome.out


@pytest.mark.ray
def test_one_session_is_a_sentence_not_a_key_error(ray_session, tmp_path, capsys):
    path = write(tmp_path, "log.csv", [GENERIC_HEADER, *generic_rows(1, 5, lambda k, j: T0 + j)])
    out = tmp_path / "out"
    outcome = run_recrl(capsys, *prepare_args("generic", path, out))
    line = assert_user_error(outcome, "only 1 session", "val and test would be empty")
    assert "KeyError" not in line
    assert tree_digest(out) == {}


@pytest.mark.ray
def test_clicks_only_yoochoose_with_empty_buys_file(ray_session, tmp_path, capsys):
    clicks = [
        f"{s},2014-04-07T10:{s:02d}:{k:02d}Z,{214536500 + (s + k) % 5},0"
        for s in range(1, 21)
        for k in range(4)
    ]
    write(tmp_path / "in", "clicks.dat", clicks)
    (tmp_path / "in" / "buys.dat").write_bytes(b"")
    out = tmp_path / "out"
    outcome = run_recrl(capsys, *prepare_args("yoochoose", tmp_path / "in", out))
    assert outcome.code == 0, outcome.err
    assert "click-only" in outcome.out
    assert "purchase" not in outcome.out.replace("no purchase events", "")
    assert "nan" not in outcome.out
    assert _meta(out)["rows"] == {
        "input": 80,
        "kept": 80,
        "dropped": _meta(out)["rows"]["dropped"],
        "dropped_total": 0,
    }
