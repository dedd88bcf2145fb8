"""Schema inference, evolution modes, hints, rescued data and malformed lines, end to end through
`ingest` on each engine (the `spark` fixture of conftest), read back with Spark and with delta-rs."""

import datetime as dt
import json

import pytest
from pyspark.sql import types as T

from lake_assets.core import quality
from lake_assets.core.bronze import NewColumnsError
from lake_assets_tests.scenario_helpers import Lake

S, L, D, B, I = T.StringType(), T.LongType(), T.DoubleType(), T.BooleanType(), T.IntegerType()
AUDIT = ["_rescued_data", "_source_file", "_line", "_record", "_ingested_at", "_batch_id", "_landing_date"]


def st(*fields) -> T.StructType:
    return T.StructType([T.StructField(n, t) for n, t in fields])


def data_schema(schema: T.StructType) -> T.StructType:
    """The schema without audit columns, with nullability dropped, for exact comparison."""
    def plain(t):
        if isinstance(t, T.StructType):
            return T.StructType([T.StructField(f.name, plain(f.dataType)) for f in t.fields])
        if isinstance(t, T.ArrayType):
            return T.ArrayType(plain(t.elementType))
        if isinstance(t, T.MapType):
            return T.MapType(plain(t.keyType), plain(t.valueType))
        return t
    return plain(T.StructType([f for f in schema.fields if f.name not in AUDIT]))


def rescued(row) -> dict | None:
    return json.loads(row["_rescued_data"]) if row["_rescued_data"] is not None else None


# ---------------------------------------------------------------- addNewColumns

def test_add_new_columns_infers_whole_batch_and_evolves_in_the_same_run(spark, tmp_path):
    lake = Lake(tmp_path)
    a = lake.land(1, "a.json", [
        {"id": 1, "x": 1, "device": {"id": "d1", "fw": {"major": 1}}, "signals": [{"name": "t", "value": 1.5}]},
        {"id": 2, "x": 2.5, "device": {"id": "d2", "fw": {"major": 2}}, "signals": []},
    ])
    big = lake.land(1, "big.json", [{"id": 100 + i} for i in range(4999)] + [{"id": 5099, "late": {"k": "v"}}])
    r1 = lake.ingest_with(spark, 1)
    assert (r1.records, r1.malformed, r1.rescued, r1.files) == (5002, 0, 0, 2)
    assert data_schema(lake.schema(spark)) == st(
        ("id", L), ("x", D), ("device", st(("id", S), ("fw", st(("major", L))))),
        ("signals", T.ArrayType(st(("name", S), ("value", D)))), ("late", st(("k", S))))
    assert set(AUDIT) <= set(lake.schema(spark).names)
    v1 = lake.version()

    # day 2: a new top-level field, a new field in a struct, a new field in an array of structs
    b = lake.land(2, "b.json", [
        {"id": 3, "x": 4, "top": True, "device": {"id": "d1", "fw": {"major": 1, "patch": 7}},
         "signals": [{"name": "t", "value": 2, "unit": "C"}]},
    ])
    r2 = lake.ingest_with(spark, 2)
    assert (r2.records, r2.rescued) == (1, 0)
    assert [v for v, _ in r2.schema_changes] == [1]
    assert sorted(r2.schema_changes[0][1].added) == ["device.fw.patch bigint", "signals[].unit string", "top boolean"]
    assert [v.version for v in lake.schemas.versions()] == [0, 1]
    assert lake.version() > v1
    schema = data_schema(lake.schema(spark))
    assert schema["device"].dataType == st(("id", S), ("fw", st(("major", L), ("patch", L))))
    assert schema["signals"].dataType == T.ArrayType(st(("name", S), ("value", D), ("unit", S)))
    assert schema["top"].dataType == B

    cols = ["_source_file", "_line", "id", "x", "top", "device", "signals", "late", "_rescued_data", "_landing_date"]
    want = [
        {"_source_file": a, "_line": 1, "id": 1, "x": 1.0, "top": None,
         "device": {"id": "d1", "fw": {"major": 1, "patch": None}},
         "signals": [{"name": "t", "value": 1.5, "unit": None}], "late": None, "_rescued_data": None,
         "_landing_date": "2026-01-01"},
        {"_source_file": a, "_line": 2, "id": 2, "x": 2.5, "top": None,
         "device": {"id": "d2", "fw": {"major": 2, "patch": None}}, "signals": [], "late": None,
         "_rescued_data": None, "_landing_date": "2026-01-01"},
        {"_source_file": b, "_line": 1, "id": 3, "x": 4.0, "top": True,
         "device": {"id": "d1", "fw": {"major": 1, "patch": 7}},
         "signals": [{"name": "t", "value": 2.0, "unit": "C"}], "late": None, "_rescued_data": None,
         "_landing_date": "2026-01-02"},
    ]
    for rows in (lake.rows(spark, columns=cols), lake.delta_rows(columns=cols)):
        assert [r for r in rows if r["_source_file"] != big] == want
        late = [r for r in rows if r["_source_file"] == big]
        assert len(late) == 5000 and all(r["late"] is None for r in late[:-1])
        assert late[-1]["late"] == {"k": "v"} and late[-1]["_line"] == 5000 and late[-1]["id"] == 5099
        assert all(r["_rescued_data"] is None for r in rows)

    # day 3: values that do not fit existing columns keep the column type and land verbatim in rescue
    c = lake.land(3, "c.json", [
        {"id": 1.5, "x": "not a number", "device": "d9", "signals": 5},
        {"id": "x", "device": {"id": 7, "fw": [1]}, "signals": [{"name": "t"}, {"name": {"n": 1}, "value": "v"}]},
        {"id": 10**20 + 1, "top": "yes"},
        {"id": 4},
    ])
    r3 = lake.ingest_with(spark, 3)
    assert (r3.records, r3.rescued) == (4, 3)
    assert data_schema(lake.schema(spark)) == schema      # no column changed type
    cols = ["_line", "id", "x", "top", "device", "signals", "_rescued_data"]
    for rows in (lake.rows(spark, columns=cols + ["_source_file"]), lake.delta_rows(columns=cols + ["_source_file"])):
        got = [r for r in rows if r["_source_file"] == c]
        assert [{k: r[k] for k in ("_line", "id", "x", "top", "device", "signals")} for r in got] == [
            {"_line": 1, "id": None, "x": None, "top": None, "device": None, "signals": None},
            # a STRING column takes a number or an object as its JSON text (as Spark does)
            {"_line": 2, "id": None, "x": None, "top": None, "device": {"id": "7", "fw": None},
             "signals": [{"name": "t", "value": None, "unit": None}, {"name": '{"n":1}', "value": None, "unit": None}]},
            {"_line": 3, "id": None, "x": None, "top": None, "device": None, "signals": None},
            {"_line": 4, "id": 4, "x": None, "top": None, "device": None, "signals": None},
        ]
        assert [rescued(r) for r in got] == [
            {"id": 1.5, "x": "not a number", "device": "d9", "signals": 5, "_file_path": c},
            {"id": "x", "device.fw": [1], "signals[1].value": "v", "_file_path": c},
            {"id": 10**20 + 1, "top": "yes", "_file_path": c},
            None,
        ]


def test_conflicting_shapes_inside_one_file_are_rescued(spark, tmp_path):
    # object then scalar, array then scalar, scalar then object for the same field, all in one first batch
    lake = Lake(tmp_path)
    f = lake.land(1, "a.json", [
        {"o": {"a": 1}, "arr": [1, 2], "s": "x", "n": 1},
        {"o": 3, "arr": "flat", "s": {"k": 1}, "n": 2.5},
        {"o": [1], "arr": [{"z": 1}], "s": [1], "n": "three"},
    ])
    r = lake.ingest_with(spark, 1)
    assert (r.records, r.rescued) == (3, 2)
    assert data_schema(lake.schema(spark)) == st(("o", st(("a", L))), ("arr", T.ArrayType(L)), ("s", S), ("n", D))
    cols = ["_line", "o", "arr", "s", "n", "_rescued_data"]
    for rows in (lake.rows(spark, columns=cols + ["_source_file"]), lake.delta_rows(columns=cols + ["_source_file"])):
        assert [(r["o"], r["arr"], r["s"], r["n"]) for r in rows] == [
            ({"a": 1}, [1, 2], "x", 1.0), (None, None, '{"k":1}', 2.5), (None, [None], "[1]", None)]
        assert [rescued(r) for r in rows] == [
            None,
            {"o": 3, "arr": "flat", "_file_path": f},
            {"o": [1], "arr[0]": {"z": 1}, "n": "three", "_file_path": f},
        ]


# ---------------------------------------------------------------- rescue

def test_rescue_mode_never_changes_the_schema(spark, tmp_path):
    lake = Lake(tmp_path, schema_evolution_mode="rescue")
    lake.land(1, "a.json", [{"id": 1, "device": {"id": "d1", "fw": {"major": 1}},
                             "signals": [{"name": "t", "value": 1.5}]}])
    lake.ingest_with(spark, 1)
    before = lake.schema(spark)
    b = lake.land(2, "b.json", [
        {"id": 2, "new": {"deep": [1, 2]}, "device": {"id": "d2", "fw": {"major": 2, "patch": 3}},
         "signals": [{"name": "a"}, {"name": "b"}, {"name": "c", "unit": "C"}]},
        {"id": "3", "signals": [{"value": "high"}]},
        {"id": 4, "_file_path": "a data field"},
    ])
    r = lake.ingest_with(spark, 2)
    assert (r.records, r.rescued) == (3, 3)
    assert r.schema_changes == [] and [v.version for v in lake.schemas.versions()] == [0]
    assert lake.schema(spark) == before
    cols = ["_source_file", "_line", "id", "device", "signals", "_rescued_data"]
    for rows in (lake.rows(spark, columns=cols), lake.delta_rows(columns=cols)):
        got = [r for r in rows if r["_source_file"] == b]
        assert [(r["id"], r["device"], r["signals"]) for r in got] == [
            (2, {"id": "d2", "fw": {"major": 2}}, [{"name": "a", "value": None}, {"name": "b", "value": None},
                                                   {"name": "c", "value": None}]),
            (None, None, [{"name": None, "value": None}]),
            (4, None, None),
        ]
        assert [rescued(r) for r in got] == [
            {"new": {"deep": [1, 2]}, "device.fw.patch": 3, "signals[2].unit": "C", "_file_path": b},
            {"id": "3", "signals[0].value": "high", "_file_path": b},
            {"`_file_path`": "a data field", "_file_path": b},
        ]


# ---------------------------------------------------------------- failOnNewColumns

def test_fail_on_new_columns_writes_nothing_until_accepted(spark, tmp_path):
    lake = Lake(tmp_path, schema_evolution_mode="failOnNewColumns")
    lake.land(1, "a.json", [{"id": 1, "device": {"id": "d1"}, "signals": [{"name": "t"}]}])
    lake.ingest_with(spark, 1)
    version, rows = lake.version(), lake.rows(spark)
    b = lake.land(2, "b.json", [
        {"id": 2, "top": 1, "device": {"id": "d2", "fw": {"patch": 3}}, "signals": [{"name": "u", "unit": "C"}]},
        {"id": "x"},
    ])
    with pytest.raises(NewColumnsError) as caught:
        lake.ingest_with(spark, 2)
    assert sorted(caught.value.fields) == ["device.fw struct<patch:bigint>", "signals[].unit string", "top bigint"]
    for field in ("top", "device.fw", "signals[].unit"):
        assert field in str(caught.value)
    assert caught.value.files == [b]
    assert lake.version() == version and lake.rows(spark) == rows
    assert len(lake.delta_rows()) == 1
    pending = lake.schemas.pending()
    assert pending is not None and sorted(pending.changes["added"]) == sorted(caught.value.fields)
    assert [v.version for v in lake.schemas.versions()] == [0]

    # failing again is stable; accepting the pending schema lets the same files load
    with pytest.raises(NewColumnsError):
        lake.ingest_with(spark, 2)
    assert lake.version() == version
    lake.schemas.accept_pending()
    assert lake.schemas.pending() is None and [v.version for v in lake.schemas.versions()] == [0, 1]
    r = lake.ingest_with(spark, 2)
    assert (r.records, r.rescued) == (2, 1)
    cols = ["_source_file", "_line", "id", "top", "device", "signals", "_rescued_data"]
    for got in (lake.rows(spark, columns=cols), lake.delta_rows(columns=cols)):
        assert [(r["id"], r["top"], r["device"], r["signals"], rescued(r)) for r in got] == [
            (1, None, {"id": "d1", "fw": None}, [{"name": "t", "unit": None}], None),
            (2, 1, {"id": "d2", "fw": {"patch": 3}}, [{"name": "u", "unit": "C"}], None),
            (None, None, None, None, {"id": "x", "_file_path": b}),
        ]


def test_fail_on_new_columns_lets_type_conflicts_through_rescued(spark, tmp_path):
    lake = Lake(tmp_path, schema_evolution_mode="failOnNewColumns")
    lake.land(1, "a.json", [{"id": 1}])
    lake.ingest_with(spark, 1)
    b = lake.land(2, "b.json", [{"id": 2.5}, {"id": 3, "gone": None}])
    r = lake.ingest_with(spark, 2)
    assert (r.records, r.rescued) == (2, 1)
    assert [(x["id"], rescued(x)) for x in lake.rows(spark)] == [(1, None), (None, {"id": 2.5, "_file_path": b}),
                                                               (3, None)]


# ---------------------------------------------------------------- none

def test_none_mode_ignores_unknown_fields_but_rescues_conflicts(spark, tmp_path):
    lake = Lake(tmp_path, schema_evolution_mode="none")
    lake.land(1, "a.json", [{"id": 1, "device": {"id": "d1"}}])
    lake.ingest_with(spark, 1)
    before = lake.schema(spark)
    b = lake.land(2, "b.json", [{"id": 2, "new": 1, "device": {"id": "d2", "extra": True}},
                                {"id": "bad", "device": {"id": 5}}])
    r = lake.ingest_with(spark, 2)
    assert sorted(r.ignored_fields) == ["device.extra boolean", "new bigint"]
    assert (r.records, r.rescued) == (2, 1)
    assert lake.schema(spark) == before and [v.version for v in lake.schemas.versions()] == [0]
    cols = ["_source_file", "_line", "id", "device", "_rescued_data"]
    for got in (lake.rows(spark, columns=cols), lake.delta_rows(columns=cols)):
        assert [(x["id"], x["device"], rescued(x)) for x in got] == [
            (1, {"id": "d1"}, None), (2, {"id": "d2"}, None),
            (None, {"id": "5"}, {"id": "bad", "_file_path": b})]


# ---------------------------------------------------------------- hints

HINTS = ("n INT, at TIMESTAMP, day DATE, device.fw.patch INT, signals.element.value DOUBLE, "
         "tags MAP<STRING,STRING>, prices MAP<STRING,STRING>, prices.value BIGINT, absent STRING, items.element.id INT, price DECIMAL(10,2), huge DECIMAL(38,0)")


def test_schema_hints_fix_types_and_add_absent_fields(spark, tmp_path):
    lake = Lake(tmp_path, schema_hints=HINTS)
    f = lake.land(1, "a.json", [
        {"n": 5, "at": "2026-01-01T10:00:00+02:00", "day": "2026-01-31", "device": {"fw": {"patch": 1}},
         "signals": [{"value": 1}, {"value": 2.5}], "tags": {"a": "b"}, "prices": {"x": 1}, "price": 12.34},
        {"n": 3_000_000_000, "at": "yesterday", "day": "2026-02-30", "device": {"fw": {"patch": 2**40}},
         "tags": {"c": 1}, "prices": {"y": "cheap"}, "price": 1.234},
        {"n": -7, "at": "2026-06-30T23:59:59.5-05:00", "tags": {}, "price": 3},
        {"at": "0999-01-01T00:00:00Z", "huge": 10**25 + 1},
    ])
    r = lake.ingest_with(spark, 1)
    assert (r.records, r.rescued) == (4, 1)
    assert data_schema(lake.schema(spark)) == st(
        ("n", I), ("at", T.TimestampType()), ("day", T.DateType()), ("device", st(("fw", st(("patch", I))))),
        ("signals", T.ArrayType(st(("value", D)))), ("tags", T.MapType(S, S)), ("prices", T.MapType(S, L)),
        ("price", T.DecimalType(10, 2)), ("huge", T.DecimalType(38, 0)), ("absent", S),
        ("items", T.ArrayType(st(("id", I)))))
    import decimal
    want = [
        (5, dt.datetime(2026, 1, 1, 8), dt.date(2026, 1, 31), {"fw": {"patch": 1}}, [{"value": 1.0}, {"value": 2.5}],
         {"a": "b"}, {"x": 1}, decimal.Decimal("12.34"), None),
        (None, None, None, {"fw": {"patch": None}}, None, {"c": "1"}, {"y": None}, None, None),
        (-7, dt.datetime(2026, 7, 1, 4, 59, 59, 500000), None, None, None, {}, None, decimal.Decimal("3.00"), None),
        (None, dt.datetime(999, 1, 1), None, None, None, None, None, None, None),
    ]
    cols = ["_source_file", "_line", "n", "at", "day", "device", "signals", "tags", "prices", "price", "absent",
            "_rescued_data"]
    rows = lake.rows(spark, columns=cols + ["huge"])
    assert [tuple(r[c] for c in cols[2:-1]) for r in rows] == want
    assert [rescued(r) for r in rows] == [
        None,
        {"n": 3_000_000_000, "at": "yesterday", "day": "2026-02-30", "device.fw.patch": 2**40,
         "prices.y": "cheap", "price": 1.234, "_file_path": f},
        None, None]
    delta = lake.delta_rows(columns=["_line", "n", "at", "absent", "_rescued_data"])
    assert [(r["n"], r["at"], r["absent"]) for r in delta] == [
        (5, dt.datetime(2026, 1, 1, 8), None), (None, None, None),
        (-7, dt.datetime(2026, 7, 1, 4, 59, 59, 500000), None), (None, dt.datetime(999, 1, 1), None)]
    assert [rescued(r) for r in delta] == [rescued(r) for r in rows]
    assert [r["huge"] for r in rows] == [None, None, None, decimal.Decimal(10**25 + 1)]


# ---------------------------------------------------------------- names

def test_problem_column_names_are_rescued_never_collide(spark, tmp_path):
    lake = Lake(tmp_path)
    f = lake.land(1, "a.json", [
        {"temp": 1, "Temp": 2, "a b": 3, "x=y": 4, "c,d": 5, "tab\there": 6, "_source_file": "fake",
         "_Rescued_Data": "fake", "device": {"id": "d", "ID": "D"}},
        {"TEMP": 9, "temp": 8},
    ])
    g = lake.land(2, "b.json", [{"Temp": 7, "Device": {"x": 1}, "temp": 6}])
    r = lake.ingest_with(spark, 1, 2)
    assert (r.records, r.rescued) == (3, 3)
    assert data_schema(lake.schema(spark)) == st(("temp", L), ("device", st(("id", S))))
    assert set(r.rejected_fields) >= {"Temp", "TEMP", "a b", "x=y", "c,d", "tab\there", "_source_file",
                                      "_Rescued_Data", "device.ID", "Device"}
    cols = ["_source_file", "_line", "temp", "device", "_rescued_data"]
    for rows in (lake.rows(spark, columns=cols), lake.delta_rows(columns=cols)):
        assert [(x["_source_file"], x["temp"], x["device"]) for x in rows] == [
            (f, 1, {"id": "d"}), (f, 8, None), (g, 6, None)]
        assert [rescued(x) for x in rows] == [
            {"Temp": 2, "a b": 3, "x=y": 4, "c,d": 5, "tab\there": 6, "_source_file": "fake",
             "_Rescued_Data": "fake", "device.ID": "D", "_file_path": f},
            {"TEMP": 9, "_file_path": f},
            {"Temp": 7, "Device": {"x": 1}, "_file_path": g},
        ]


# ---------------------------------------------------------------- malformed lines

def test_malformed_lines_go_to_quarantine_and_the_run_continues(spark, tmp_path):
    lake = Lake(tmp_path)
    f = lake.land(1, "a.json", [
        {"id": 1}, "not json", "[1, 2]", "42", '{"id": 2, "trunc', "", '"just a string"', {"id": 3},
        '{"id": nan}', '{"id": 1e400}',
    ])
    g = lake.land(1, "b.json", [{"id": 4}])
    r = lake.ingest_with(spark, 1)
    assert (r.records, r.malformed, r.files) == (3, 7, 2)
    assert [(x["_source_file"], x["_line"], x["id"], x["_rescued_data"])
            for x in lake.rows(spark, columns=["_source_file", "_line", "id", "_rescued_data"])] == [
        (f, 1, 1, None), (f, 8, 3, None), (g, 1, 4, None)]
    cols = ["_source_file", "_line", "_raw", "_error", "_landing_date"]
    for rows in (lake.rows(spark, "quarantine", cols), lake.delta_rows("quarantine", cols)):
        assert [(x["_source_file"], x["_line"], x["_raw"], x["_landing_date"]) for x in rows] == [
            (f, 2, "not json", "2026-01-01"), (f, 3, "[1, 2]", "2026-01-01"), (f, 4, "42", "2026-01-01"),
            (f, 5, '{"id": 2, "trunc', "2026-01-01"), (f, 7, '"just a string"', "2026-01-01"),
            (f, 9, '{"id": nan}', "2026-01-01"), (f, 10, '{"id": 1e400}', "2026-01-01")]
        assert all(x["_error"] for x in rows)
        assert "not a JSON object" in rows[1]["_error"] and "invalid JSON" in rows[0]["_error"]


def test_checks_audit_each_day_on_every_engine(spark, tmp_path):
    """The bronze checks' core (quality.audit) per day: a clean day passes, a day with a type
    conflict in most rows, a malformed line and new fields is judged on its own figures."""
    lake = Lake(tmp_path, schema_hints="n BIGINT")
    lake.land(1, "a.json", [{"id": i, "n": i} for i in range(10)])
    lake.land(2, "b.json", [{"id": 10, "n": "x"}, {"id": 11, "n": "y"}, {"id": 12, "n": 3, "extra": True},
                            "not json"])
    result = lake.ingest_with(spark, 1, 2)
    audits = quality.audit(spark, lake.lake_config, lake.source_config, ["2026-01-01", "2026-01-02"], result.batch_ids)
    day1, day2 = audits["2026-01-01"], audits["2026-01-02"]
    assert (day1.facts.rows, day1.facts.rescued, day1.facts.malformed) == (10, 0, 0)
    assert (day2.facts.rows, day2.facts.rescued, day2.facts.malformed) == (3, 2, 1)
    assert all(v.passed for v in day1.verdicts if v.check != "schema_drift")
    levels = {v.check: v.level for v in day2.verdicts}
    assert levels["rescued_data_rate"] == quality.ERROR       # 2 of 3 rows are type conflicts
    assert levels["malformed_rate"] == quality.ERROR          # 1 of 4 lines
    assert levels["unreadable_files"] == quality.PASS
    rescued = next(v for v in day2.verdicts if v.check == "rescued_data_rate")
    assert "66.7 %" in rescued.description and "n 2" in rescued.description
