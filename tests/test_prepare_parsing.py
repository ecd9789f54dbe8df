"""`parsing`: ids, timestamps and events to the canonical table, bad values marked not raised."""

from __future__ import annotations

import calendar

import numpy as np
import pyarrow as pa
import pytest
from recrl.pipelines.prepare import schema
from recrl.pipelines.prepare.parsing import parse_events, parse_ids, parse_timestamps

# 2014-04-07T10:51:09.277Z by hand: 1970..2013 are 44 years with 11 leap days, and
# Jan + Feb + Mar 2014 are 90 days, so the 7th of April is day 44 * 365 + 11 + 90 + 6.
DAY_2014_04_07 = 44 * 365 + 11 + 90 + 6
YOOCHOOSE_NS = ((DAY_2014_04_07 * 24 + 10) * 3600 + 51 * 60 + 9) * 10**9 + 277 * 10**6


def utc_ns(*fields: int, ns: int = 0) -> int:
    """Exact ns since the epoch of a UTC (year, month, day, hour, minute, second)."""
    return calendar.timegm((*fields, 0, 0, 0)) * 10**9 + ns


def code(reason: str) -> int:
    return schema.REASON_CODE[reason]


ISO = "2014-04-07T10:51:09.277Z"


def test_hand_computed_epoch_agrees_with_the_calendar():
    assert DAY_2014_04_07 == 16167
    assert YOOCHOOSE_NS == utc_ns(2014, 4, 7, 10, 51, 9, ns=277_000_000) == 1396867869277000000


# --- timestamps ------------------------------------------------------------------------


def test_iso_timestamps_to_exact_nanoseconds():
    values, valid = parse_timestamps(
        pa.array(
            [
                "2014-04-07T10:51:09.277Z",
                " 2014-04-07T10:51:09.277Z ",
                "2014-04-07T12:51:09.277+02:00",  # same instant, other offset
                "2019-11-24 00:00:34.762830+00:00",  # Open Bandit's format
                "2014-04-07T10:51:09.123456789Z",  # nanosecond fraction kept exactly
                "2014-04-07T10:51:09",  # naive: taken as UTC
                "2014-04-07",
            ]
        ),
        "iso",
    )
    assert valid.tolist() == [True] * 7
    assert values.dtype == np.int64
    assert values.tolist() == [
        YOOCHOOSE_NS,
        YOOCHOOSE_NS,
        YOOCHOOSE_NS,
        utc_ns(2019, 11, 24, 0, 0, 34, ns=762_830_000),
        utc_ns(2014, 4, 7, 10, 51, 9, ns=123_456_789),
        utc_ns(2014, 4, 7, 10, 51, 9),
        utc_ns(2014, 4, 7, 0, 0, 0),
    ]


@pytest.mark.parametrize("unit", ["iso", "auto"])
def test_bad_iso_timestamps_are_invalid(unit):
    values, valid = parse_timestamps(
        pa.array(["abc", "", "2014-13-45", None, "2014-04-07T10:51:09.277Z"]), unit
    )
    assert valid.tolist() == [False, False, False, False, True]
    assert values.tolist() == [0, 0, 0, 0, YOOCHOOSE_NS]


def test_unix_seconds_and_milliseconds_are_exact():
    seconds, ok_s = parse_timestamps(pa.array(["881250949", " 978300760 ", "881250949.5"]), "s")
    assert ok_s.tolist() == [True, True, True]
    assert seconds.tolist() == [881250949 * 10**9, 978300760 * 10**9, 881250949_500_000_000]
    # 1433221332117 ms * 1e6 is not representable in float64 (it rounds to ...116999936).
    millis, ok_ms = parse_timestamps(pa.array(["1433221332117", "+1433224214164", "x"]), "ms")
    assert ok_ms.tolist() == [True, True, False]
    assert millis.tolist() == [1433221332117 * 10**6, 1433224214164 * 10**6, 0]


def test_integer_typed_columns_are_scaled_by_the_unit():
    column = pa.array([1433221332117, None], pa.int64())
    values, valid = parse_timestamps(column, "ms")
    assert values.tolist() == [1433221332117 * 10**6, 0]
    assert valid.tolist() == [True, False]
    values, valid = parse_timestamps(pa.array([YOOCHOOSE_NS]), "auto")  # integers are ns
    assert values.tolist() == [YOOCHOOSE_NS] and valid.tolist() == [True]


def test_timestamp_typed_column_is_converted_to_ns():
    column = pa.array([1396867869277, None], pa.timestamp("ms", tz="UTC"))
    values, valid = parse_timestamps(column, "auto")
    assert values.tolist() == [YOOCHOOSE_NS, 0]
    assert valid.tolist() == [True, False]


def test_auto_decides_one_format_for_the_column_by_majority():
    # Two ISO values outvote one ns value: the ns value is invalid, never read as ns.
    values, valid = parse_timestamps(pa.array([str(YOOCHOOSE_NS), ISO, ISO, "5", "abc"]), "auto")
    assert valid.tolist() == [False, True, True, False, False]
    assert values.tolist() == [0, YOOCHOOSE_NS, YOOCHOOSE_NS, 0, 0]
    # The same values with ns in the majority: now the ISO value is the invalid one.
    values, valid = parse_timestamps(pa.array([str(YOOCHOOSE_NS)] * 2 + [ISO]), "auto")
    assert valid.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("unit", "good"),
    [("ns", str(YOOCHOOSE_NS)), ("auto", str(YOOCHOOSE_NS)), ("ms", "1396867869277")],
)
def test_out_of_range_numbers_are_invalid_not_an_exception(unit, good):
    values, valid = parse_timestamps(pa.array(["99999999999999999999", "1e30", "7", good]), unit)
    assert valid.tolist() == [False, False, False, True]
    assert values.tolist() == [0, 0, 0, YOOCHOOSE_NS]


# --- ids -------------------------------------------------------------------------------


def test_int_ids_accept_signs_and_spaces_and_reject_the_rest():
    values, valid = parse_ids(
        pa.array(["214536502", " 12 ", "+5", "-3", "abc", "", None, "1.0", "99999999999999999999"]),
        "int",
    )
    assert valid.tolist() == [True, True, True, True, False, False, False, False, False]
    assert values.type == pa.int64()
    assert values.to_pylist() == [214536502, 12, 5, -3, 0, 0, 0, 0, 0]


def test_integer_typed_id_column_keeps_its_values_and_marks_nulls():
    values, valid = parse_ids(pa.array([7, None, 9], pa.int32()), "int")
    assert values.type == pa.int64()
    assert values.to_pylist() == [7, 0, 9]
    assert valid.tolist() == [True, False, True]


def test_str_ids_are_trimmed_and_empty_ones_invalid():
    values, valid = parse_ids(pa.array([" u1 ", "S", "", "  ", None]), "str")
    assert values.to_pylist() == ["u1", "S", "", "", ""]
    assert valid.tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("id_type", ["str", "int"])
def test_null_spellings_are_invalid_ids_and_negative_ids_are_valid(id_type):
    raw = ["nan", "NaN", "null", "NULL", "None", " none ", "<NA>", "", "-7", "7"]
    values, valid = parse_ids(pa.array(raw), id_type)
    assert valid.tolist() == [False] * 8 + [True, True]
    expected = ["-7", "7"] if id_type == "str" else [-7, 7]
    assert values.to_pylist()[8:] == expected
    numbers, ok = parse_ids(pa.array([10, 11], pa.int64()), "str")  # int column, str ids
    assert numbers.to_pylist() == ["10", "11"] and ok.tolist() == [True, True]


# --- whole events ----------------------------------------------------------------------


def raw_events(rows):
    """Adapter output from (session, timestamp, item, event, drop, bad) tuples."""
    n = len(rows)
    return pa.table(
        {
            schema.SESSION_ID: pa.array([r[0] for r in rows], pa.string()),
            schema.TIMESTAMP: pa.array([r[1] for r in rows], pa.string()),
            schema.ITEM_ID: pa.array([r[2] for r in rows], pa.string()),
            schema.EVENT: pa.array([r[3] for r in rows], pa.string()),
            schema.FILE: pa.array(np.full(n, 3, np.int32)),
            schema.LINE: pa.array(np.arange(10, 10 + n, dtype=np.int64)),
            schema.DROP: pa.array([r[4] for r in rows], pa.uint8()),
            schema.BAD: pa.array([r[5] for r in rows], pa.string()),
        }
    )


def test_parse_events_maps_events_and_marks_the_first_failing_check():
    rows = [
        ("1", ISO, "214536502", "click", 0, None),
        ("2", ISO, "214662742", " PURCHASE ", 0, None),
        ("abc", ISO, "3", "click", 0, None),  # bad session
        ("4", "2014-13-45", "3", "click", 0, None),  # bad timestamp
        ("5", "", "3", "click", 0, None),  # empty timestamp
        ("6", ISO, "", "click", 0, None),  # empty item
        ("x", "bad", "y", "view", 0, None),  # everything bad: the session decides
        ("7", "bad", "3", "excluded", 0, None),  # bad value before exclusion
        ("8", ISO, "3", "view", 0, None),  # unknown event
        ("9", ISO, "3", "excluded", 0, None),  # dropped by design
        (None, None, None, None, code("malformed_row"), "1,2,3,4,5"),  # from the reader
    ]
    out = parse_events(
        raw_events(rows), timestamp_unit="iso", session_id_type="int", item_id_type="int"
    )
    assert tuple(out.column_names) == schema.PARSED_COLUMNS
    assert out[schema.DROP].to_pylist() == [
        schema.KEPT,
        schema.KEPT,
        code("invalid_session_id"),
        code("invalid_timestamp"),
        code("invalid_timestamp"),
        code("invalid_item_id"),
        code("invalid_session_id"),
        code("invalid_timestamp"),
        code("invalid_event"),
        code("excluded_event"),
        code("malformed_row"),
    ]
    assert out[schema.BAD].to_pylist() == [
        None,
        None,
        "abc",
        "2014-13-45",
        "",
        "",
        "x",
        "bad",
        "view",
        "excluded",
        "1,2,3,4,5",
    ]
    assert out[schema.SESSION_ID].to_pylist()[:2] == [1, 2]
    assert out[schema.ITEM_ID].to_pylist()[:2] == [214536502, 214662742]
    assert out[schema.TIMESTAMP].to_pylist()[:2] == [YOOCHOOSE_NS, YOOCHOOSE_NS]
    assert out[schema.IS_BUY].to_pylist()[:2] == [False, True]
    assert out[schema.FILE].to_pylist() == [3] * len(rows)
    assert out[schema.LINE].to_pylist() == list(range(10, 10 + len(rows)))
    assert out[schema.SESSION_ID].type == pa.int64()
    assert out[schema.TIMESTAMP].type == pa.int64()
    assert out[schema.DROP].type == pa.uint8()


def test_parse_events_with_string_ids_and_auto_timestamps():
    rows = [
        ("u1", ISO, "a", "click", 0, None),
        ("u2", str(YOOCHOOSE_NS + 1), "b", "Purchase", 0, None),
        ("", ISO, "c", "click", 0, None),
    ]
    out = parse_events(
        raw_events(rows), timestamp_unit="auto", session_id_type="str", item_id_type="str"
    )
    assert out[schema.SESSION_ID].to_pylist() == ["u1", "u2", ""]
    assert out[schema.ITEM_ID].to_pylist() == ["a", "b", "c"]
    # One format for the column: ISO has the majority, so the ns value is invalid.
    assert out[schema.TIMESTAMP].to_pylist() == [YOOCHOOSE_NS, 0, YOOCHOOSE_NS]
    assert out[schema.IS_BUY].to_pylist() == [False, True, False]
    assert out[schema.DROP].to_pylist() == [
        0,
        code("invalid_timestamp"),
        code("invalid_session_id"),
    ]
    assert out[schema.BAD].to_pylist() == [None, str(YOOCHOOSE_NS + 1), ""]


def test_drop_reason_codes_follow_the_schema_order():
    assert list(schema.DROP_REASONS.values())[:6] == [
        "malformed_row",
        "invalid_session_id",
        "invalid_timestamp",
        "invalid_item_id",
        "invalid_event",
        "excluded_event",
    ]
    assert schema.KEPT == 0 and 0 not in schema.DROP_REASONS
    assert all(schema.REASON_CODE[r] in schema.DROP_REASONS for r in schema.INVALID_REASONS)
