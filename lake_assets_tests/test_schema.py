"""Pure schema functions: inference, merging, hints, comparison, evolution. No Spark."""

import pytest
from pyspark.sql import types as T

from lake_assets.core.schema import (
    Inferrer, SchemaError, apply_hints, diff, drop_unknown, evolve, merge_types, name_problem,
    parse_hints, parse_type, subsumes,
)

S, L, D, B, I = T.StringType(), T.LongType(), T.DoubleType(), T.BooleanType(), T.IntegerType()
RESERVED = frozenset(["_source_file", "_line", "_ingested_at", "_batch_id", "_landing_date", "_rescued_data"])


def st(*fields) -> T.StructType:
    return T.StructType([T.StructField(n, t) for n, t in fields])


def infer(*records) -> T.StructType:
    inferrer = Inferrer()
    for r in records:
        inferrer.absorb(r)
    return inferrer.result()


# ---------------------------------------------------------------- inference

def test_infer_atomic_types():
    assert infer({"i": 1, "f": 1.5, "s": "x", "b": True, "n": None}) == \
        st(("i", L), ("f", D), ("s", S), ("b", B), ("n", T.NullType()))
    # bool is not an int; ints past 64 bits keep the field BIGINT (such values are rescued, not rounded)
    assert infer({"b": False})["b"].dataType == B
    assert infer({"big": 2**64})["big"].dataType == L


def test_infer_int_and_double_widen_to_double_in_either_order():
    assert infer({"x": 1}, {"x": 2.5}) == st(("x", D))
    assert infer({"x": 2.5}, {"x": 1}) == st(("x", D))
    assert infer({"a": [1, 2.5]}) == st(("a", T.ArrayType(D)))


def test_infer_nested_structs_and_arrays_of_structs_merge_fields_in_first_seen_order():
    got = infer({"device": {"id": "d1", "fw": {"major": 1}}, "signals": [{"name": "t"}, {"value": 1.5}]},
                {"device": {"fw": {"minor": 2}}, "signals": [{"unit": "C", "name": "u"}]})
    assert got == st(
        ("device", st(("id", S), ("fw", st(("major", L), ("minor", L))))),
        ("signals", T.ArrayType(st(("name", S), ("value", D), ("unit", S)))),
    )


def test_infer_covers_the_whole_batch_not_a_sample():
    inferrer = Inferrer()
    for i in range(10_000):
        inferrer.absorb({"id": i, **({"late": {"x": "y"}} if i == 4999 else {})})
    assert inferrer.result() == st(("id", L), ("late", st(("x", S))))


def test_infer_conflicts_keep_first_type_and_are_counted():
    inferrer = Inferrer()
    for r in ({"n": 1, "o": {"a": 1}, "arr": [1]}, {"n": "x", "o": 3, "arr": "s"}, {"n": {"k": 1}, "o": [1], "arr": {}}):
        inferrer.absorb(r)
    assert inferrer.result() == st(("n", L), ("o", st(("a", L))), ("arr", T.ArrayType(L)))
    assert inferrer.conflicts == 5  # arr's {} is empty: no conflict


def test_infer_string_takes_any_value_and_empty_values_wait_for_a_type():
    inferrer = Inferrer()
    for r in ({"s": "x", "e": [], "o": {}}, {"s": 5, "e": {}, "o": []}, {"s": {"a": 1}, "e": 7, "o": {"k": True}},
              {"s": [1], "e": "x", "o": []}):
        inferrer.absorb(r)
    assert inferrer.result() == st(("s", S), ("e", L), ("o", st(("k", B))))
    assert inferrer.conflicts == 1  # only e's "x" after 7


def test_infer_null_and_empty_values_leave_type_unknown_until_seen():
    assert infer({"a": None, "e": [], "o": {}}) == st(("a", T.NullType()), ("e", T.ArrayType(T.NullType())),
                                                       ("o", st()))
    assert infer({"a": None, "e": []}, {"a": "x", "e": [{"k": 1}]}) == \
        st(("a", S), ("e", T.ArrayType(st(("k", L)))))
    assert drop_unknown(infer({"a": None, "e": [], "o": {}, "k": 1, "p": {"q": None, "r": True}})) == \
        st(("k", L), ("p", st(("r", B))))
    assert infer({"v": [{"a": 1}, None]}) == st(("v", T.ArrayType(st(("a", L)))))


def test_infer_case_variants_stay_separate_keys():
    assert infer({"temp": 1}, {"Temp": 2}).names == ["temp", "Temp"]


# ---------------------------------------------------------------- merge

def test_merge_types():
    assert merge_types(T.NullType(), L) == L
    assert merge_types(L, T.NullType()) == L
    assert merge_types(L, D) == D and merge_types(D, L) == D
    assert merge_types(L, S) == L and merge_types(S, L) == S          # first seen wins
    assert merge_types(st(("a", L)), S) == st(("a", L))
    assert merge_types(st(("a", L), ("b", S)), st(("c", B), ("a", D))) == st(("a", D), ("b", S), ("c", B))
    assert merge_types(T.ArrayType(st(("a", L))), T.ArrayType(st(("b", S)))) == T.ArrayType(st(("a", L), ("b", S)))
    assert merge_types(st(), st(("x", st(("y", L))))) == st(("x", st(("y", L))))


# ---------------------------------------------------------------- names

def test_name_problem():
    assert name_problem("temp", ["temp", "other"]) is None
    assert "case" in name_problem("Temp", ["temp"])
    assert "case" in name_problem("TEMP", ["x", "temp"])
    for bad in ("a b", "a,b", "a;b", "a{b", "a}b", "a(b", "a)b", "a=b", "a\nb", "a\tb"):
        assert name_problem(bad, []) == "characters Delta rejects", bad
    assert name_problem("", []) == "empty name"
    assert name_problem("_source_file", [], RESERVED) == "reserved column name"
    assert name_problem("_rescued_data", [], RESERVED) == "reserved column name"
    assert name_problem("_source_file", []) is None                    # only reserved where asked


def test_reserved_names_are_matched_ignoring_case():
    # the engine resolves columns case-insensitively: `_Source_File` would collide with the audit column
    assert name_problem("_Source_File", [], RESERVED) is not None
    assert name_problem("_RESCUED_DATA", [], RESERVED) is not None


# ---------------------------------------------------------------- hints

def test_parse_type_ddl():
    assert parse_type("STRING") == S
    assert parse_type("bigint") == L
    assert parse_type("INT") == I
    assert parse_type("DECIMAL(10, 2)") == T.DecimalType(10, 2)
    assert parse_type("decimal") == T.DecimalType(10, 0)
    assert parse_type("MAP<STRING,STRING>") == T.MapType(S, S)
    assert parse_type("ARRAY<STRUCT<a: INT, `b c`: ARRAY<DOUBLE>>>") == \
        T.ArrayType(st(("a", I), ("b c", T.ArrayType(D))))
    assert parse_type("map<string, struct<x int>>") == T.MapType(S, st(("x", I)))
    assert parse_type("TIMESTAMP") == T.TimestampType() and parse_type("date") == T.DateType()
    for bad in ("FOO", "ARRAY<INT", "MAP<STRING>", "INT INT", "DECIMAL(10"):
        with pytest.raises(SchemaError):
            parse_type(bad)


def test_parse_hints_auto_loader_syntax():
    hints = parse_hints("event_id STRING, metrics.temp DOUBLE, arr.element.x INT, m.key STRING, m.value INT, "
                        "tags MAP<STRING,STRING>, price DECIMAL(10,2), `a.b`.c BIGINT")
    assert hints == [(["event_id"], S), (["metrics", "temp"], D), (["arr", "element", "x"], I),
                     (["m", "key"], S), (["m", "value"], I), (["tags"], T.MapType(S, S)),
                     (["price"], T.DecimalType(10, 2)), (["a.b", "c"], L)]
    assert parse_hints("") == [] and parse_hints(None) == [] and parse_hints(" a INT , ") == [(["a"], I)]
    for bad in ("justaname", "a NOTATYPE", "a INT b"):
        with pytest.raises(SchemaError):
            parse_hints(bad)


def test_apply_hints_overrides_inference_at_any_depth():
    inferred = st(("id", L), ("device", st(("fw", st(("major", L))), ("id", S))),
                  ("signals", T.ArrayType(st(("name", S), ("value", L)))),
                  ("m", T.MapType(S, L)), ("tags", st(("k", S))))
    hinted = apply_hints(inferred, parse_hints(
        "id STRING, device.fw.major INT, signals.element.value DOUBLE, m.value DOUBLE, tags MAP<STRING,STRING>"))
    assert hinted == st(("id", S), ("device", st(("fw", st(("major", I))), ("id", S))),
                        ("signals", T.ArrayType(st(("name", S), ("value", D)))),
                        ("m", T.MapType(S, D)), ("tags", T.MapType(S, S)))


def test_apply_hints_adds_absent_fields():
    hinted = apply_hints(st(("device", st(("id", S))), ("signals", T.ArrayType(st(("name", S))))),
                         parse_hints("device.fw.patch INT, signals.element.unit STRING, extra TIMESTAMP"))
    assert hinted == st(("device", st(("id", S), ("fw", st(("patch", I))))),
                        ("signals", T.ArrayType(st(("name", S), ("unit", S)))),
                        ("extra", T.TimestampType()))


def test_apply_hints_absent_array_and_map_paths_build_arrays_and_maps():
    hinted = apply_hints(st(), parse_hints("items.element.id INT, prices.value INT"))
    assert hinted == st(("items", T.ArrayType(st(("id", I)))), ("prices", T.MapType(S, I)))


# ---------------------------------------------------------------- comparison

def test_subsumes():
    assert subsumes(st(("a", L)), st(("a", L)))
    assert subsumes(st(("a", D)), st(("a", L)))                       # ints fit doubles
    assert not subsumes(st(("a", L)), st(("a", D)))
    assert not subsumes(st(("a", I)), st(("a", L)))                   # a hinted INT needs range checks
    assert not subsumes(st(("a", L)), st(("b", L)))                   # unknown field
    assert subsumes(st(("a", L)), st(("b", T.NullType())))            # only nulls seen: nothing to keep
    assert not subsumes(st(("temp", L)), st(("Temp", L)))             # case differs
    assert subsumes(st(("s", T.ArrayType(st(("x", L), ("y", S))))), st(("s", T.ArrayType(st(("x", L))))))
    assert not subsumes(st(("s", T.ArrayType(st(("x", L))))), st(("s", T.ArrayType(st(("z", L))))))
    assert not subsumes(st(("t", T.TimestampType())), st(("t", S)))  # strings must be parsed first
    assert not subsumes(st(("o", st(("a", L)))), st(("o", L)))


def test_diff_reports_added_removed_retyped_paths():
    old = st(("a", L), ("device", st(("id", S))), ("signals", T.ArrayType(st(("name", S)))), ("gone", S))
    new = st(("a", D), ("device", st(("id", S), ("fw", st(("patch", L))))),
             ("signals", T.ArrayType(st(("name", S), ("unit", S)))), ("top", B))
    d = diff(old, new)
    assert d.added == ["device.fw struct<patch:bigint>", "signals[].unit string", "top boolean"]
    assert d.removed == ["gone"]
    assert d.retyped == ["a: bigint -> double"]
    assert not d.empty and diff(new, new).empty
    assert d.as_dict() == {"added": d.added, "removed": d.removed, "retyped": d.retyped}


# ---------------------------------------------------------------- evolution

CURRENT = st(("id", L), ("device", st(("id", S))), ("signals", T.ArrayType(st(("name", S)))))
SEEN = st(("id", D), ("device", st(("id", S), ("fw", st(("patch", L))))),
          ("signals", T.ArrayType(st(("name", S), ("unit", S)))), ("top", B), ("nothing", T.NullType()))


def test_evolve_add_new_columns_appends_new_fields_at_every_depth_and_keeps_types():
    e = evolve(CURRENT, SEEN, "addNewColumns", reserved=RESERVED)
    assert e.schema == st(("id", L), ("device", st(("id", S), ("fw", st(("patch", L))))),
                          ("signals", T.ArrayType(st(("name", S), ("unit", S)))), ("top", B))
    assert e.new_fields == ["device.fw struct<patch:bigint>", "signals[].unit string", "top boolean"]
    assert e.rejected == {}


@pytest.mark.parametrize("mode", ["rescue", "failOnNewColumns", "none"])
def test_evolve_other_modes_keep_the_schema_but_list_new_fields(mode):
    e = evolve(CURRENT, SEEN, mode, reserved=RESERVED)
    assert e.schema == CURRENT
    assert e.new_fields == ["device.fw struct<patch:bigint>", "signals[].unit string", "top boolean"]


def test_evolve_type_conflicts_are_not_new_fields():
    e = evolve(st(("n", L), ("o", st(("a", L)))), st(("n", S), ("o", L)), "failOnNewColumns")
    assert e.new_fields == [] and e.schema == st(("n", L), ("o", st(("a", L))))


def test_evolve_rejects_bad_names_case_variants_and_reserved_names():
    seen = st(("temp", L), ("Temp", L), ("a b", S), ("x=y", S), ("_source_file", S), ("_rescued_data", S),
              ("device", st(("id", S), ("ID", S), ("_source_file", S))))
    e = evolve(st(), seen, "addNewColumns", reserved=RESERVED)
    assert e.schema == st(("temp", L), ("device", st(("id", S), ("_source_file", S))))
    assert set(e.rejected) == {"Temp", "a b", "x=y", "_source_file", "_rescued_data", "device.ID"}
    assert "case" in e.rejected["Temp"] and "case" in e.rejected["device.ID"]
    # a case variant of an existing column is rejected even when it arrives in a later batch
    later = evolve(e.schema, st(("TEMP", D), ("Device", st(("x", L)))), "addNewColumns", reserved=RESERVED)
    assert later.schema == e.schema and set(later.rejected) == {"TEMP", "Device"}


def test_evolve_applies_hints_in_every_mode():
    hints = parse_hints("id STRING, device.fw.patch INT, added DATE")
    grown = evolve(CURRENT, SEEN, "addNewColumns", hints, RESERVED).schema
    assert grown["id"].dataType == S and grown["device"].dataType["fw"].dataType == st(("patch", I))
    assert grown.names[-1] == "added" and grown["added"].dataType == T.DateType()
    kept = evolve(CURRENT, SEEN, "rescue", hints, RESERVED).schema
    assert kept == st(("id", S), ("device", st(("id", S), ("fw", st(("patch", I))))),
                      ("signals", T.ArrayType(st(("name", S)))), ("added", T.DateType()))


def test_evolve_first_batch_from_empty_schema():
    e = evolve(st(), infer({"a": 1, "n": None, "e": [], "s": [{"x": 1.5}]}), "addNewColumns", reserved=RESERVED)
    assert e.schema == st(("a", L), ("s", T.ArrayType(st(("x", D)))))
    assert e.new_fields == ["a bigint", "s array<struct<x:double>>"]
