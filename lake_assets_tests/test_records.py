"""Per-record work: parsing lines, fitting records to a schema, rescuing what does not fit. No Spark."""

import json

import pytest
from pyspark.sql import types as T

from lake_assets.core.records import Fitter, Malformed, fit_atomic, parse_line, rescued_json

S, L, D, B, I = T.StringType(), T.LongType(), T.DoubleType(), T.BooleanType(), T.IntegerType()
TS = T.TimestampType()


def st(*fields) -> T.StructType:
    return T.StructType([T.StructField(n, t) for n, t in fields])


# ---------------------------------------------------------------- parse_line

def test_parse_line_objects():
    assert parse_line(b'{"a": 1, "b": [1.5, "x"], "c": {"d": null}}') == {"a": 1, "b": [1.5, "x"], "c": {"d": None}}
    assert parse_line('{"a": "\u00e9"}\r\n') == {"a": "\u00e9"}
    assert parse_line(b"  {}  ") == {}


@pytest.mark.parametrize("line", [
    b"not json", b"[1, 2]", b'[{"a": 1}]', b"42", b'"text"', b"null", b"true",
    b'{"a": 1', b'{"a": [1, 2}', b'{"a": nan}', b'{"a": +Infinity}', b'{"a": 1}{"b": 2}', b"\xff\xfe{}",
])
def test_parse_line_rejects_what_is_not_one_json_object(line):
    with pytest.raises(Malformed):
        parse_line(line)


def test_parse_line_reads_nan_and_infinity_as_spark_does():
    import math

    value = parse_line(b'{"a": NaN, "b": [Infinity, -Infinity], "c": 12345678901234567890123}')
    assert math.isnan(value["a"]) and value["b"] == [math.inf, -math.inf] and value["c"] == 12345678901234567890123


def test_parse_line_malformed_reason_says_what_was_found():
    with pytest.raises(Malformed, match="not a JSON object.*list"):
        parse_line(b"[1]")
    with pytest.raises(Malformed, match="invalid JSON"):
        parse_line(b'{"a": ')


def test_parse_line_keeps_integers_of_any_size_exact():
    big = 10**20 + 1
    assert parse_line(b'{"a": %d, "b": -9223372036854775809, "c": 18446744073709551616}' % big) == \
        {"a": big, "b": -9223372036854775809, "c": 18446744073709551616}
    assert parse_line(b'{"a": 9223372036854775807}') == {"a": 2**63 - 1}


def test_parse_line_numbers_beyond_double_range_are_malformed_not_infinite():
    # a float that overflows would silently become inf (then null): keep the raw line instead
    with pytest.raises(Malformed):
        parse_line(b'{"a": 1e400}')


# ---------------------------------------------------------------- fit_atomic

def test_fit_atomic_strings_booleans_integers():
    assert fit_atomic("x", S) == (True, "x")
    # a STRING column takes any value as its JSON text, as Spark's JSON reader does
    assert [fit_atomic(v, S) for v in (1, True, 2.5, 2**70, {"a": [1]})] == [
        (True, "1"), (True, "true"), (True, "2.5"), (True, str(2**70)), (True, '{"a":[1]}')]
    assert fit_atomic(True, B) == (True, True)
    assert fit_atomic(1, B)[0] is False
    assert fit_atomic(True, L)[0] is False and fit_atomic(False, D)[0] is False
    assert fit_atomic(2**63 - 1, L) == (True, 2**63 - 1)
    assert fit_atomic(2**63, L)[0] is False and fit_atomic(-(2**63) - 1, L)[0] is False
    assert fit_atomic(1.5, L)[0] is False and fit_atomic(3.0, L)[0] is False and fit_atomic("1", L)[0] is False
    assert fit_atomic(2**31 - 1, I) == (True, 2**31 - 1) and fit_atomic(-(2**31), I)[0] is True
    assert fit_atomic(3_000_000_000, I)[0] is False                 # never wrapped, never NULLed
    assert fit_atomic(-(2**31) - 1, I)[0] is False
    assert fit_atomic(32767, T.ShortType())[0] and not fit_atomic(32768, T.ShortType())[0]
    assert fit_atomic(127, T.ByteType())[0] and not fit_atomic(128, T.ByteType())[0]


def test_fit_atomic_doubles_floats_decimals():
    assert fit_atomic(1.5, D) == (True, 1.5)
    assert fit_atomic(2, D) == (True, 2)
    assert fit_atomic(2**60, D) == (True, float(2**60))
    assert fit_atomic("1.5", D)[0] is False
    assert fit_atomic(1e39, T.FloatType())[0] is False and fit_atomic(1.5, T.FloatType())[0] is True
    assert fit_atomic(10**400, D)[0] is False                       # too big for a double: rescued, no crash
    assert fit_atomic(12345678.12, T.DecimalType(10, 2))[0] is True
    assert fit_atomic(123456789.1, T.DecimalType(10, 2))[0] is False   # 9 integer digits > 8
    assert fit_atomic(1.234, T.DecimalType(10, 2))[0] is False          # scale 3 > 2
    assert fit_atomic("1.5", T.DecimalType(10, 2))[0] is False


def test_fit_atomic_dates():
    assert fit_atomic("2026-01-31", T.DateType()) == (True, "2026-01-31")
    for bad in ("2026-02-30", "2026-1-1", "yesterday", 20260101, "2026-01-01T00:00:00"):
        assert fit_atomic(bad, T.DateType())[0] is False, bad


def test_fit_atomic_timestamps_become_one_utc_form():
    assert fit_atomic("2026-01-01T10:00:00+02:00", TS) == (True, "2026-01-01 08:00:00.000000")
    assert fit_atomic("2026-01-01T10:00:00Z", TS) == (True, "2026-01-01 10:00:00.000000")
    assert fit_atomic("2026-01-01T10:00:00.123456-05:30", TS) == (True, "2026-01-01 15:30:00.123456")
    assert fit_atomic("2026-01-01 10:00:00", TS) == (True, "2026-01-01 10:00:00.000000")   # naive = UTC
    assert fit_atomic("2025-12-31T23:30:00-01:00", TS) == (True, "2026-01-01 00:30:00.000000")
    # years before 1000 keep four digits, so the engine's `yyyy` format reads them
    assert fit_atomic("0999-01-01T00:00:00Z", TS) == (True, "0999-01-01 00:00:00.000000")


def test_fit_atomic_unparseable_or_out_of_range_timestamps_are_rejected_not_raised():
    for bad in ("not a time", "2026-13-01T00:00:00Z", "", 1767225600, True,
                "9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"):
        assert fit_atomic(bad, TS)[0] is False, bad


# ---------------------------------------------------------------- Fitter

SCHEMA = st(("id", L), ("amount", D), ("device", st(("id", S), ("fw", st(("major", L))))),
            ("signals", T.ArrayType(st(("name", S), ("unit", S)))), ("tags", T.ArrayType(L)),
            ("attrs", T.MapType(S, L)), ("at", TS))


def test_fitter_clean_record_passes_unchanged():
    record = {"id": 1, "amount": 2, "device": {"id": "d", "fw": {"major": 3}},
              "signals": [{"name": "t", "unit": "C"}], "tags": [1, 2], "attrs": {"k": 1}}
    assert Fitter(SCHEMA).fit(record) == (record, {}, [])


def test_fitter_rescues_unknown_fields_by_path():
    clean, rescued, ignored = Fitter(SCHEMA).fit(
        {"id": 1, "new": "x", "device": {"id": "d", "fw": {"major": 1, "patch": 3}, "extra": {"a": [1]}},
         "signals": [{"name": "a"}, {"name": "b"}, {"name": "c", "level": 2}], "gone": None})
    assert clean == {"id": 1, "device": {"id": "d", "fw": {"major": 1}},
                     "signals": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    assert rescued == {"new": "x", "device.fw.patch": 3, "device.extra": {"a": [1]}, "signals[2].level": 2}
    assert ignored == []


def test_fitter_rescues_type_conflicts_verbatim_and_nulls_the_column():
    clean, rescued, _ = Fitter(SCHEMA).fit(
        {"id": 1.5, "amount": "x", "device": "d1", "signals": [{"name": "a", "unit": 7}, "oops"],
         "tags": 5, "attrs": {"k": "v", "j": 2}, "at": "not a time"})
    assert clean == {"signals": [{"name": "a", "unit": "7"}, None], "attrs": {"k": None, "j": 2}}
    assert rescued == {"id": 1.5, "amount": "x", "device": "d1", "signals[1]": "oops",
                       "tags": 5, "attrs.k": "v", "at": "not a time"}
    clean, rescued, _ = Fitter(SCHEMA).fit({"id": {"a": 1}, "tags": ["x", 2], "device": {"fw": [1]}})
    assert clean == {"tags": [None, 2], "device": {}}
    assert rescued == {"id": {"a": 1}, "tags[0]": "x", "device.fw": [1]}


def test_empty_values_are_never_conflicts_nor_rescued():
    clean, rescued, _ = Fitter(SCHEMA).fit({"id": [], "amount": {}, "tags": {}, "device": [], "signals": [{}],
                                            "unknown": [], "other": {"x": [], "y": None}, "new": {"z": 1}})
    assert rescued == {"new": {"z": 1}}
    assert clean == {"signals": [{}]}


def test_fitter_case_variants_and_bad_names_are_rescued():
    clean, rescued, _ = Fitter(SCHEMA).fit({"id": 1, "ID": 2, "a b": 3, "_source_file": "x",
                                            "device": {"Id": "D", "id": "d"}})
    assert clean == {"id": 1, "device": {"id": "d"}}
    assert rescued == {"ID": 2, "a b": 3, "_source_file": "x", "device.Id": "D"}


def test_fitter_hinted_int_overflow_is_rescued():
    clean, rescued, _ = Fitter(st(("n", I))).fit({"n": 3_000_000_000})
    assert clean == {} and rescued == {"n": 3_000_000_000}


def test_fitter_converts_timestamps_for_the_engine():
    clean, rescued, _ = Fitter(SCHEMA).fit({"at": "2026-01-01T10:00:00+02:00"})
    assert clean == {"at": "2026-01-01 08:00:00.000000"} and rescued == {}


def test_fitter_mode_none_ignores_unknown_fields_but_rescues_conflicts():
    clean, rescued, ignored = Fitter(SCHEMA, rescue_unknown=False).fit(
        {"id": "x", "new": 1, "device": {"id": "d", "fw": {"patch": 1}}, "signals": [{"name": "a", "z": 1}]})
    assert clean == {"device": {"id": "d", "fw": {}}, "signals": [{"name": "a"}]}
    assert rescued == {"id": "x"}
    assert ignored == ["new", "device.fw.patch", "signals[0].z"]


# ---------------------------------------------------------------- rescued_json

def test_rescued_json():
    assert rescued_json({}, "s3://b/f.json") is None
    assert json.loads(rescued_json({"device.fw.patch": 3, "signals[2].unit": "C"}, "s3://b/f.json")) == \
        {"device.fw.patch": 3, "signals[2].unit": "C", "_file_path": "s3://b/f.json"}
    doc = rescued_json({"o": {"a": [1, None]}, "s": "\u00e9\n"}, "/x")
    assert json.loads(doc) == {"o": {"a": [1, None]}, "s": "\u00e9\n", "_file_path": "/x"}


def test_rescued_json_keeps_integers_beyond_64_bits_verbatim():
    assert json.loads(rescued_json({"n": 10**30 + 7}, "/x")) == {"n": 10**30 + 7, "_file_path": "/x"}


def test_rescued_json_never_overwrites_a_data_field_named_file_path():
    assert json.loads(rescued_json({"_file_path": "mine", "a._file_path": 1}, "/x")) == \
        {"`_file_path`": "mine", "a._file_path": 1, "_file_path": "/x"}


def test_fit_atomic_decimal_integers_past_64_bits_are_written_as_exact_text():
    assert fit_atomic(10**25, T.DecimalType(38, 0)) == (True, str(10**25))
    assert fit_atomic(10**25, T.DecimalType(20, 0))[0] is False
    assert fit_atomic(5, T.DecimalType(38, 0)) == (True, 5)
