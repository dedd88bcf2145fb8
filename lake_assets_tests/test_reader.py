"""The reader's fast paths (the pyarrow scan, with type conflicts split and malformed lines left
out; its tables going into bronze as they are, with misfit fields moved to the rescued column)
must give exactly what the slow paths give: the Python Inferrer's scan, and every record walked
through the Fitter."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from lake_assets.core import pyarrow_scan, reader, typed_rows
from lake_assets_tests.scenario_helpers import Lake


def both(data: bytes):
    fast, slow = pyarrow_scan.scan_bytes(data), pyarrow_scan.scan_bytes(data, use_arrow=False)
    return fast, slow


def same(fast, slow):
    assert fast["schema"].json() == slow["schema"].json()
    assert (fast["records"], fast["malformed"]) == (slow["records"], slow["malformed"])
    assert bool(fast["conflicts"]) == bool(slow["conflicts"])
    assert fast["conflict_lines"] == slow["conflict_lines"]


ARROW_OK = [
    b'{"a":1}\n{"a":2.5}\n',                                      # bigint + double -> double
    b'{"a":2.5}\n{"a":1}\n',
    b'{"a":null,"b":[]}\n{"c":{"x":null}}\n',                     # null-only fields, empty arrays
    b'{"a":[]}\n{"a":[1]}\n{"a":[1.5,2]}\n',
    b'{"a":{"x":1}}\n\n{"a":{"y":true,"x":2}}\r\n\r\n{"b":"s"}',   # field order, blank lines, CRLF, no final \n
    b'{"t":"2026-11-18T08:15:02Z","d":"2026-11-18","u":"2026-11-18T08:15:02.123Z"}\n',  # arrow timestamps
    b'{}\n{"a":{}}\n',
    b'{"a":[{"b":1},{"c":[null,{"d":"x"}]}]}\n',
    '{"a":"\u00e9\u4e2d","b":"\\u00e9"}\n'.encode(),
    b'{"a":1234567890123456789,"b":[-1234567890123456789]}\n{"a":1,"c":2.5}\n',  # 19 digits that int64 holds
]
# Lines parse_line rejects (malformed) or blank lines of whitespace: pyarrow reads the others.
LEFT_OUT = [
    b'{"a":1}\n{"a":\n',                                         # malformed line
    b'{"a":1}\n[1,2]\n"x"\n',                                    # not objects
    b'   \n{"a":1}\n', b'\x0b\n{"a":1}\n',                       # whitespace-only lines are blank
    b'{"a":1,"b":nan}\n{"a":"x","b":1.5}\n{"a":"y","c":[}\n',     # malformed lines; conflicts
]
FALLBACK = [
    b'{"a":NaN}\n', b'{"a":Infinity}\n',                         # RapidJSON accepts, orjson does not
    b'{"a":1,"a":2}\n',                                          # duplicate keys
    b'{"a":"\xff"}\n',                                           # invalid UTF-8
    b'{"a":1} {"a":2}\n', b'{"a":\n1}\n',                        # several / split values per line
    b' {"a":1}\n',
    b'{"a":"\\ud800"}\n', b'{"a":1e400}\n',
    b'{"a":9223372036854775807,"b":9223372036854775808,"c":-9223372036854775809}\n',  # arrow: doubles
    b'{"a":1.5}\n{"a":1234567890123456789}\n', b'{"s":{"v":[0.5,12345678901234567890]}}\n',  # among doubles
]


# Type conflicts: pyarrow reads the lines of each JSON type of the conflicting field apart.
SPLIT = [
    b'{"a":1}\n{"a":"s"}\n{"a":{"b":1}}\n',
    b'{"a":null,"n":null,"m":null}\n{"a":2,"n":1}\n{"a":"s","m":true}\n{"a":"t"}\n',  # first seen wins
    b'{"a":{"b":[{"c":1},{"c":2.5}]}}\n{"a":{"b":[{"c":"x"}]}}\n',              # inside an array
    b'{"a":1,"b":1}\n{"a":"s","b":1}\n{"a":2,"b":"t"}\n{"a":"u","b":"v"}\n',   # two fields (split twice)
    b'{"a":[1],"z":{"q":null}}\n{"a":1}\n{"a":[2],"z":{"q":1}}\n',
    # the first record lacks fields: a parse of the whole file with the conflicting values made
    # null gives their order of first appearance
    b'{"x":null}\n{"a":2,"n":1}\n{"a":"s","m":true}\n{"a":"t"}\n',
    b'{"d":{"v":1}}\n{"d":{"v":"x","w":2}}\n{"z":1,"d":{"u":3,"v":4}}\n',
    b'{"k":1}\n{"k":"a \\"q\\" b","late":1}\n{"k":true,"later":2}\n{"k":-1.5e3}\n',    b'{"s":"x"}\n{"s":1}\n{"s":true}\n{"t":1}\n{"t":"x"}\n',  # a STRING field takes numbers and booleans
]
# Splits whose lines' types cannot be read off the key's text: parsed line by line instead.
SPLIT_PARSED = [
    b'{"d":{"id":1},"s":{"id":"a"}}\n{"d":{"id":"x"},"s":{"id":"b"}}\n',     # the name is used twice
    b'{"m":1}\n{"\\u006d":"x"}\n{"m":2}\n',                                  # the key written escaped
    b'{"s":[{"v":1}]}\n{"s":[{"v":"x"}]}\n',                                  # inside an array
]
# Conflicts a split cannot explain alone go the Python way.
SPLIT_FALLBACK = [
    b'{"a":[1,"x"]}\n{"a":[2]}\n',                                         # one record, two types
    b'{"a":1,"b":null}\n{"a":"s","b":"x"}\n{"a":2,"b":1}\n',                # b's first value is in a lost line
    b'{"a":1,"b":[1]}\n{"b":["x"],"c":1}\n{"a":2,"b":[2]}\n',                  # lacks fields; split inside an array
    # empty values are no conflict
    b'{"e":[]}\n{"e":5}\n{"e":{}}\n', b'{"e":{}}\n{"e":"x"}\n{"e":[]}\n',
    b'{"e":1.5}\n{"e":{"a":{}}}\n{"e":[[]]}\n{"e":"x"}\n',
]


@pytest.mark.parametrize("data", SPLIT)
def test_arrow_scan_splits_type_conflicts_like_the_python_inferrer(data):
    fast, slow = both(data)
    assert fast["engine"] == "arrow"
    same(fast, slow)


@pytest.mark.parametrize("data", SPLIT_PARSED)
def test_splits_fall_back_to_parsing_each_line_where_the_key_text_is_not_exact(data, monkeypatch):
    parsed = []
    original = pyarrow_scan._json_types_at
    monkeypatch.setattr(pyarrow_scan, "_json_types_at", lambda *a: parsed.append(1) or original(*a))
    fast, slow = both(data)
    assert fast["engine"] == "arrow" and parsed
    same(fast, slow)


def test_key_text_gives_each_lines_json_type():
    lines = [b'{"a":{"k" : "x"}}', b'{"a":{"k":-1}}', b'{"a":{"k":true}}', b'{"a":{"k":null}}', b'{"a":{}}',
             b'{"b":"\\"k\\":1"}']
    got = pyarrow_scan.types_by_key_text(lines, "k")
    assert got == [frozenset([t]) for t in ("string", "number", "boolean")] + [frozenset()] * 3
    # an object or array may be empty, which is no value: the text does not say
    assert pyarrow_scan.types_by_key_text(lines + [b'{"k":{"z":1}}'], "k") is None
    assert pyarrow_scan.types_by_key_text([b'{"k":1,"k":"x"}'], "k") is None  # twice in one line


@pytest.mark.parametrize("data, scanner", [(d, "arrow") for d in ARROW_OK + LEFT_OUT]
                         + [(d, "python") for d in FALLBACK + SPLIT_FALLBACK])
def test_arrow_scan_equals_python_inferrer_or_falls_back(data, scanner):
    fast, slow = both(data)
    assert fast["engine"] == scanner
    same(fast, slow)


# Arrays whose first element is null: pyarrow 26 infers them into tables whose list offsets run past
# their values (full validation fails, to_pylist shows the elements shifted, the engine refuses the batch).
NULL_FIRST = [
    b'{"a":[null,false]}\n',
    b'{"p":null}\n{"p":{"a":[null,1]}}\n{"p":{"a":[2,null]}}\n',
    b'{"x":1}\n{"a":[null,"x"],"x":2}\n{"a":[null,null,"y"]}\n',
    b'{"s":[{"t":[null,1.5]},null]}\n{"s":[]}\n',
    b'{"p":null}\n{"p":{"a":[null,{"x":1}]}}\n',
]


@pytest.mark.parametrize("data", NULL_FIRST)
def test_arrays_starting_with_null_are_read_into_valid_tables_holding_every_value(data):
    fast, slow = both(data)
    assert fast["engine"] == "arrow"
    same(fast, slow)
    table = pa.concat_tables([t for t, _, _ in fast["parsed"]])
    table.validate(full=True)
    assert table.to_pylist() == [{f: r.get(f) for f in table.column_names}
                                 for r in map(json.loads, filter(None, data.split(b"\n")))]


def test_a_file_of_arrays_starting_with_null_lands_in_bronze(spark, tmp_path):
    lake = Lake(tmp_path)
    records = [{"id": 1, "flags": [None, False], "p": None}, {"id": 2, "flags": [True], "p": {"v": [None, 3]}},
               {"id": 3, "flags": None, "p": {"v": [None, None, 4]}}]
    lake.land(1, "nulls.json", records)
    result = lake.ingest_with(spark, 1)
    assert (result.records, result.failed) == (3, {})
    assert lake.rows(spark, columns=["id", "flags", "p"]) == records


def test_integers_of_19_digits_are_typed_by_pyarrow_only_where_it_reads_them_exactly():
    exact = b'{"id":1234567890123456789,"n":{"v":[-9223372036854775808]},"x":0.25}\n{"id":7,"x":-3.5}\n'
    fast = pyarrow_scan.scan_bytes(exact)
    assert fast["engine"] == "arrow"
    (table, _, _), = fast["parsed"]
    assert table.to_pylist() == [{"id": 1234567890123456789, "n": {"v": [-9223372036854775808]}, "x": 0.25},
                                 {"id": 7, "n": None, "x": -3.5}]
    assert pyarrow_scan.scan_bytes(b'{"x":1e300,"id":7}\n')["engine"] == "arrow"  # large, but no such integer
    for inexact in (b'{"id":1.5}\n{"id":1234567890123456789}\n', b'{"id":18446744073709551616}\n'):
        assert pyarrow_scan.scan_bytes(inexact)["engine"] == "python"


def _random_value(rng, depth=0):
    choice = rng.randrange(9 if depth < 3 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return rng.randrange(-10**6, 10**6)
    if choice == 2:
        return rng.random() * 100
    if choice == 3:
        return rng.choice(["x", "2026-11-18T08:15:02.123Z", "2026-11-18"])
    if choice == 4:
        return rng.random() < 0.5
    if choice in (5, 6):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice("abcde"): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_arrow_scan_equals_python_inferrer_on_random_files():
    rng = random.Random(5)
    arrow = 0
    for _ in range(400):
        # a stable shape per key, so that many files have no conflict and take the arrow path
        shapes = {k: _random_value(rng) for k in "pqrs"}
        records = []
        for _ in range(rng.randrange(1, 6)):
            rec = {k: (v if rng.random() < 0.7 else None) for k, v in shapes.items() if rng.random() < 0.8}
            if rng.random() < 0.1:
                rec[rng.choice("pqrs")] = _random_value(rng)
            records.append(rec)
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        fast, slow = both(data)
        same(fast, slow)
        if fast["engine"] == "arrow":  # and what pyarrow parsed holds every value as written
            arrow += 1
            for table, numbers, _ in fast["parsed"]:  # (a part of the lines, where types conflict)
                table.validate(full=True)
                assert table.to_pylist() == [_as_parsed(records[n - 1], pa.struct(list(table.schema)))
                                             for n in numbers.tolist()]
    assert arrow > 100


def _as_parsed(value, t):
    """A record as a table of type `t` holds it: the fields it lacks as None, at every level."""
    if value is None:
        return None
    if pa.types.is_struct(t):
        return {f.name: _as_parsed(value.get(f.name), f.type) for f in t}
    if pa.types.is_list(t):
        return [_as_parsed(v, t.value_type) for v in value]
    return value


def test_arrow_splits_equal_the_python_inferrer_on_random_conflicting_files():
    rng = random.Random(9)
    split = 0
    for _ in range(300):
        records = []
        for _ in range(rng.randrange(2, 8)):
            rec = {}
            for key in rng.sample(["a", "b", "c", "n"], rng.randrange(1, 5)):  # optional fields, any order
                rec[key] = rng.choice([1, 2.5, "s", True, None, 7]) if key != "n" else {
                    "v": rng.choice([1, "x", None]), "w": rng.choice([None, 3])}
            records.append(rec)
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        fast, slow = both(data)
        same(fast, slow)
        split += fast["engine"] == "arrow" and fast["conflicts"] > 0
    assert split > 50  # (a STRING field first takes the rest: no conflict, the Python way)


def test_conflict_lines_and_timestamp_shapes():
    lines = [{"t": "2026-11-18T08:15:02.123Z", "m": 1}, {"t": "2026-11-18T08:15:03.000Z", "m": "x"},
             {"t": "2026-11-18T08:15:04.999Z", "m": 2}]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    for r, engine in ((pyarrow_scan.scan_bytes(data), "arrow"), (pyarrow_scan.scan_bytes(data, use_arrow=False), "python")):
        assert r["engine"] == engine and r["conflict_lines"] == [2]

    def shapes(body: bytes, part: int = 0) -> dict:  # of one part of the arrow scan
        return {str(p): s for p, s in pyarrow_scan.ts_shapes(pyarrow_scan.scan_bytes(body)["parsed"][part][0]).items()}

    assert shapes(data) == shapes(data, 1) == {"t": "iso8601_zone"}
    assert shapes(b'{"t":"2026-02-30T08:15:02.123Z"}\n') == {}  # no such day
    assert shapes(b'{"t":"2026-02-03T08:15:02.123Z"}\n{"t":"2026-02-03 08:15:02"}\n') == {}
    assert shapes(b'{"a":[{"t":"2026-02-03T08:15:02.123Z"}],"b":{"t":"2026-02-03T08:15:02.123Z"}}\n') == {
        "a[].t": "iso8601_zone", "b.t": "iso8601_zone"}


# ---------------------------------------------------------------- end to end: fast == slow

pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


def _records(rng, n, conflicts: bool, bad_ts: bool = False):
    out = []
    for i in range(n):
        minor = rng.randrange(10)
        if conflicts and rng.random() < 0.2:
            minor = f"{minor}-beta"
        ts = f"2026-01-01T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}Z"
        if bad_ts and i == n // 2:
            ts = "2026-01-01T25:00:00.000Z" if i % 2 else "yesterday"
        rec = {"id": i, "at": ts, "fw": {"major": 1, "minor": minor},
               "sig": [{"v": rng.random(), "at": ts}], "when": "2026-01-02"}
        if rng.random() < 0.3 or i == 0:  # the first record names every field (see _arrow_scan)
            rec["extra"] = {"deep": rng.randrange(3)}
        out.append(rec)
    return out


def _write_files(lake: Lake):
    rng = random.Random(11)
    lake.land(1, "plain.json", _records(rng, 60, False))
    lake.land(1, "conflicts.json", _records(rng, 60, True))
    objects = _records(rng, 30, False)
    for i, r in enumerate(objects):  # a conflict the typed path walks: objects where numbers were
        if i % 4 == 3:
            r["fw"]["minor"] = {"rc": i}
    lake.land(1, "objects.json", objects)
    lake.land(1, "bad_ts.json", _records(rng, 60, False, bad_ts=True))
    lake.land(1, "malformed.json", _records(rng, 20, False)[:10] + ['{"id": 1, "at":', "", "  ", "[1]"]
              + _records(rng, 20, True)[10:])


def _contents(spark, lake: Lake):
    cols = [c for c in lake.schema(spark).fieldNames() if c not in ("_ingested_at", "_batch_id")]
    rows = lake.rows(spark, columns=cols)
    for r in rows:  # the rescued JSON's key order is not part of the contract
        if r.get("_rescued_data"):
            r["_rescued_data"] = json.loads(r["_rescued_data"])
            r["_rescued_data"]["_file_path"] = r["_rescued_data"]["_file_path"].rsplit("/", 1)[-1]
    from lake_assets.core.tables import schema_or_none

    bad = lake.rows(spark, "quarantine", ["_source_file", "_line", "_raw", "_error"]) \
        if schema_or_none(spark, lake.layout.quarantine) else []
    return [{**r, "_source_file": r["_source_file"].rsplit("/", 1)[-1]} for r in rows], \
        [{**r, "_source_file": r["_source_file"].rsplit("/", 1)[-1]} for r in bad]


def _ingest_fast_and_slow(spark, tmp_path, monkeypatch, hints, write=None, mode="addNewColumns", days=(1,)):
    """The files ingested as they come (typed from the scan's pyarrow parse where it can be) and
    with every file walked line by line through the Fitter: (fast lake, slow lake, {file: lines
    the fast run walked})."""
    write = write or _write_files
    fast = Lake(tmp_path / "fast", schema_evolution_mode=mode, schema_hints=hints)
    write(fast)
    walked: dict = {}
    original = typed_rows.walked_batch

    def spy(out, declared, fitter, lines, f):
        walked.setdefault(f["uri"].rsplit("/", 1)[-1], []).extend(n for n, _ in lines)
        return original(out, declared, fitter, lines, f)

    monkeypatch.setattr(typed_rows, "walked_batch", spy)
    r_fast = [fast.ingest_with(spark, day) for day in days]  # one batch per day
    assert not reader._PARSED.items  # what the scan kept is gone, taken by lake_typed or released
    monkeypatch.setattr(typed_rows, "walked_batch", original)

    slow = Lake(tmp_path / "slow", schema_evolution_mode=mode, schema_hints=hints)
    write(slow)
    monkeypatch.setattr(pyarrow_scan, "arrow_scan", lambda data: None)  # the Python scan: nothing typed
    r_slow = [slow.ingest_with(spark, day) for day in days]
    assert [(r.records, r.rescued, r.malformed) for r in r_fast] == [(r.records, r.rescued, r.malformed) for r in r_slow]
    assert fast.schema(spark) == slow.schema(spark)
    return fast, slow, walked


@pytest.mark.parametrize("hints", ["at TIMESTAMP, sig.element.at TIMESTAMP", "at TIMESTAMP, when DATE, fw.major INT",
                                   ""])
def test_typed_files_land_exactly_what_walking_every_record_lands(spark, tmp_path, monkeypatch, hints):
    fast, slow, walked = _ingest_fast_and_slow(spark, tmp_path, monkeypatch, hints)
    # Walked: the records whose conflicting value is an object (it cannot be rescued as a column's
    # values), and bad_ts.json whole when a TIMESTAMP hint meets its timestamps that do not parse.
    assert sorted(walked["objects.json"]) == [4, 8, 12, 16, 20, 24, 28]
    assert ("bad_ts.json" in walked) == ("TIMESTAMP" in hints)
    assert not {"plain.json", "conflicts.json", "malformed.json"} & set(walked)
    cf, cs = _contents(spark, fast), _contents(spark, slow)
    assert cf == cs
    assert len(cf[1]) == 2 and any(r["_rescued_data"] for r in cf[0])
    # doubles land exactly as written (pyarrow reads them; the engine's from_json may not)
    written = {r["id"]: r["sig"][0]["v"] for r in _records(random.Random(11), 60, False)}
    assert {r["id"]: r["sig"][0]["v"] for r in cf[0] if r["_source_file"] == "plain.json"} == written


def _write_drift(lake: Lake):
    """Day 1 sets the schema; day 2 brings a file whose first values of fw.minor are strings (the
    batch's type is BIGINT), a new scalar field, a new object and a case variant."""
    lake.land(1, "base.json", [{"id": i, "fw": {"minor": i}, "v": i / 3} for i in range(5)])
    lake.land(2, "later.json", [{"id": 10 + i, "fw": {"minor": f"{i}-rc" if i < 3 else i}, "v": i * 1.1,
                                 "note": f"n{i}" if i % 2 else None, "flag": i % 3 == 0,
                                 "meta": {"k": i}, "ID": i} for i in range(8)])


@pytest.mark.parametrize("mode", ["addNewColumns", "rescue", "none"])
def test_fields_that_cannot_fit_move_to_the_rescued_column_without_a_walk(spark, tmp_path, monkeypatch, mode):
    fast, slow, walked = _ingest_fast_and_slow(spark, tmp_path, monkeypatch, "", _write_drift, mode, (1, 2))
    # rescue: the new object `meta` is rescued from its parsed line, not walked; none ignores it
    assert walked == {}
    cf, cs = _contents(spark, fast), _contents(spark, slow)
    assert cf == cs
    later = [r for r in cf[0] if r["_source_file"] == "later.json"]
    assert [r["fw"]["minor"] for r in later] == [None, None, None, 3, 4, 5, 6, 7]
    assert later[1]["_rescued_data"]["fw.minor"] == "1-rc"  # a value that does not fit: rescued in every mode
    assert later[1]["_rescued_data"].get("ID") == (None if mode == "none" else 1)  # none ignores unknown keys
    if mode == "rescue":
        assert later[1]["_rescued_data"]["note"] == "n1" and later[0]["_rescued_data"]["flag"] is True


def test_a_map_column_is_built_value_by_value_where_the_json_reader_cannot(spark, tmp_path, monkeypatch):
    fast, slow, walked = _ingest_fast_and_slow(spark, tmp_path, monkeypatch, "extra MAP<STRING,BIGINT>")
    assert "plain.json" in walked  # `extra` is an object: pyarrow parsed it as a struct
    assert fast.schema(spark)["extra"].dataType.simpleString() == "map<string,bigint>"
    cf, cs = _contents(spark, fast), _contents(spark, slow)
    assert cf == cs
    assert {r["extra"]["deep"] for r in cf[0] if r["extra"]} == {0, 1, 2}


# ---------------------------------------------------------------- the typed path's conversion

def test_conform_fills_missing_fields_widens_and_keeps_nulls_at_every_level():
    import datetime as dt

    import pyarrow as pa
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_schema

    from lake_assets.core.fieldpath import FieldPath

    lines = [{"a": 1, "s": {"x": 1}, "l": [{"v": 2}, None], "t": "2026-01-02T03:04:05.678Z"},
             {"a": 2**53 + 1, "s": None, "l": None, "t": None},
             {"a": None, "s": {"x": None}, "l": [], "t": "2026-12-31T23:59:59.999Z"}]
    table = pyarrow_scan.arrow_read(b"".join(json.dumps(x).encode() + b"\n" for x in lines))
    target = T.StructType([
        T.StructField("a", T.DoubleType()),
        T.StructField("s", T.StructType([T.StructField("x", T.LongType()), T.StructField("y", T.StringType())])),
        T.StructField("l", T.ArrayType(T.StructType([T.StructField("v", T.DoubleType()),
                                                     T.StructField("w", T.BooleanType())]))),
        T.StructField("t", T.TimestampType()), T.StructField("m", T.MapType(T.StringType(), T.StringType()))])
    declared = to_arrow_schema(typed_rows.declared_schema(target))
    out = pa.table([typed_rows.conform(table.column(f.name).combine_chunks(), f.type) if f.name in table.column_names
                    else pa.nulls(3, f.type) for f in declared], schema=declared)
    assert out.to_pylist() == [
        {"a": 1.0, "s": {"x": 1, "y": None}, "l": [{"v": 2.0, "w": None}, None],
         "t": dt.datetime(2026, 1, 2, 3, 4, 5, 678000), "m": None},
        {"a": float(2**53), "s": None, "l": None, "t": None, "m": None},   # nearest double, as from_json
        {"a": None, "s": {"x": None, "y": None}, "l": [], "t": dt.datetime(2026, 12, 31, 23, 59, 59, 999000),
         "m": None}]
    ts = {FieldPath(("t",)): "iso8601_zone"}
    assert typed_rows.typed_fits(target, T.StructType([T.StructField("t", T.StringType())]), ts)
    assert not typed_rows.typed_fits(target, T.StructType([T.StructField("t", T.StringType())]), {})
    # checked value by value: what the Fitter would rescue makes the file walk instead
    assert typed_rows.typed_fits(T.StructType([T.StructField("a", T.IntegerType())]),
                             T.StructType([T.StructField("a", T.LongType())]), {})
    assert typed_rows.conform(pa.array([1, -2**31]), pa.int32()).to_pylist() == [1, -2**31]
    assert typed_rows.conform(pa.array(["2026-02-28", None]), pa.date32()).to_pylist() == [dt.date(2026, 2, 28), None]
    assert typed_rows.conform(pa.array([1.5, -3]), pa.float32()).to_pylist() == [1.5, -3.0]
    for values, t in (([2**31], pa.int32()), (["2026-02-30"], pa.date32()), (["2026-2-03"], pa.date32()),
                      (["0000-01-01"], pa.date32()), ([1e39], pa.float32())):
        with pytest.raises(typed_rows.DoesNotConvert):
            typed_rows.conform(pa.array(values), t)


def test_a_value_that_does_not_convert_sends_its_file_to_the_walk(spark, tmp_path, monkeypatch):
    import datetime as dt

    lake = Lake(tmp_path, schema_hints="n INT, d DATE")
    lake.land(1, "ok.json", [{"n": 1, "d": "2026-01-02", "v": 0.1}, {"n": -5, "d": None, "v": 2}])
    big = lake.land(1, "big.json", [{"n": 2**31, "d": "2026-01-03", "v": 1.5}, {"n": 7, "d": "2026-02-30", "v": 3}])
    typed, walked = [], []
    plan, walk = reader.plan_reads, typed_rows.walked_batch

    def spy_plan(files, *args):
        planned = plan(files, *args)  # stages: plan_reads returns the files as the readers take them
        typed.extend(f["uri"].rsplit("/", 1)[-1] for f in planned if f["typed"])
        return planned

    def spy_walk(out, declared, fitter, lines, f):
        walked.extend((f["uri"].rsplit("/", 1)[-1], n) for n, _ in lines)
        return walk(out, declared, fitter, lines, f)

    monkeypatch.setattr(reader, "plan_reads", spy_plan)
    monkeypatch.setattr(typed_rows, "walked_batch", spy_walk)
    r = lake.ingest_with(spark, 1)
    assert sorted(typed) == ["big.json", "ok.json"] and sorted(walked) == [("big.json", 1), ("big.json", 2)]
    assert (r.records, r.rescued) == (4, 2)
    rows = lake.rows(spark, columns=["_source_file", "_line", "n", "d", "v", "_rescued_data"])
    got = [(x["_source_file"].rsplit("/", 1)[-1], x["_line"], x["n"], x["d"], x["v"],
            json.loads(x["_rescued_data"]) if x["_rescued_data"] else None) for x in rows]
    assert sorted(got) == [
        ("big.json", 1, None, dt.date(2026, 1, 3), 1.5, {"n": 2**31, "_file_path": big}),
        ("big.json", 2, 7, None, 3.0, {"d": "2026-02-30", "_file_path": big}),
        ("ok.json", 1, 1, dt.date(2026, 1, 2), 0.1, None),
        ("ok.json", 2, -5, None, 2.0, None)]


def test_timestamp_shapes_convert_to_the_instant_the_fitter_writes():
    import datetime as dt

    import pyarrow as pa
    from pyspark.sql import types as T

    from lake_assets.core.fieldpath import FieldPath
    from lake_assets.core.records import fit_atomic

    rng = random.Random(3)

    def stamp() -> str:
        year = rng.choice([1000, 1999, 2026, 8999, 999, 9999, 0])
        text = f"{year:04d}-{rng.randrange(1, 14):02d}-{rng.randrange(1, 33):02d}{rng.choice('T T ')}" \
               f"{rng.randrange(0, 25):02d}:{rng.randrange(0, 61):02d}"
        if rng.random() < 0.8:
            text += f":{rng.randrange(0, 61):02d}"
            if rng.random() < 0.5:
                text += "." + "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 8)))
        return text + rng.choice(["", "Z", "+01:00", "-05:30", "+0530", "+14:00", "-23:59", "+24:00", "z"])

    typed = 0
    for _ in range(2000):
        value = stamp()
        fits, written = fit_atomic(value, T.TimestampType())
        shaped = bool(pyarrow_scan.ts_shapes(pa.table({"t": [value]})))
        if shaped:  # only values the Fitter takes, and to the same instant
            got = typed_rows.conform(pa.array([value]), pa.timestamp("us"))[0].as_py()
            assert fits and got == dt.datetime.fromisoformat(written), value
            typed += 1
    assert typed > 300
    assert pyarrow_scan.ts_shapes(pa.table({"t": ["2026-01-02T03:04:05", "2026-01-02 03:04"]})) == {
        FieldPath(("t",)): "iso8601_utc"}
    mixed = pa.array(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05"])  # not one shape: walked
    assert pyarrow_scan.ts_shapes(pa.table({"t": mixed})) == {}
    with pytest.raises(typed_rows.DoesNotConvert):
        typed_rows.conform(mixed, pa.timestamp("us"))


def test_parse_cache_keeps_the_newest_files_within_its_limit(monkeypatch):
    import pyarrow as pa

    cache = reader._ParseCache()
    table = pa.table({"v": pa.array(range(100_000), pa.int64())})  # 800 KB
    parsed = [(table, None, None)]
    monkeypatch.setenv("LAKE_PARSE_CACHE_MB", "2")
    for key in "abc":
        cache.put(key, parsed)
    assert list(cache.items) == ["b", "c"] and cache.size == 2 * table.nbytes  # the oldest went first
    assert cache.pop("b") is parsed and cache.pop("b") is None and cache.size == table.nbytes
    monkeypatch.setenv("LAKE_PARSE_CACHE_MB", "0")
    cache.put("d", parsed)
    assert "d" not in cache.items
    monkeypatch.setenv("LAKE_PARSE_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="LAKE_PARSE_CACHE_MB must be a whole number of MiB"):
        cache.put("e", parsed)
