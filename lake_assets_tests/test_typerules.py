"""The type rule tables, pair by pair (no Spark): every pair of kinds merged by the Python
inference, the kind merge of the Arrow scan and merge_types, each giving the documented result; and
every kind against every column type in the Python walk (fit_atomic) and the Arrow fast path
(typed_fits, conform, moved_fields), each as typerules.FITS says."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_type

from lake_assets.core import pyarrow_scan, typed_rows, typerules
from lake_assets.core.fieldpath import FieldPath
from lake_assets.core.records import fit_atomic
from lake_assets.core.schema import Inferrer, merge_types
from lake_assets.core.typerules import kind_type, merge_kinds

# name: (a JSON value of that kind, its inferred kind)
KINDS = {
    "null": (None, None), "boolean": (True, "boolean"), "bigint": (1, "bigint"), "double": (1.5, "double"),
    "string": ("s", "string"), "struct": ({"a": 1}, {"a": "bigint"}), "array": ([1], ["bigint"]),
    "{}": ({}, {}), "[]": ([], [None]),
}
# The documented merge (schema.py, typerules.MERGE): first (row) then second (column) -> the result;
# "!" marks a type conflict (the first seen wins), "~" a STRING taking another type (no conflict).
EXPECTED = """
    first\\second null    boolean  bigint   double   string   struct   array    {}       []
    null         null    boolean  bigint   double   string   struct   array    {}       []
    boolean      boolean boolean  boolean! boolean! boolean! boolean! boolean! boolean  boolean
    bigint       bigint  bigint!  bigint   double   bigint!  bigint!  bigint!  bigint   bigint
    double       double  double!  double   double   double!  double!  double!  double   double
    string       string  string~  string~  string~  string   string~  string~  string~  string~
    struct       struct  struct!  struct!  struct!  struct!  struct   struct!  struct   struct
    array        array   array!   array!   array!   array!   array!   array    array    array
    {}           {}      boolean  bigint   double   string   struct   array    {}       {}
    []           []      boolean  bigint   double   string   struct   array    []       []
"""
_ROWS = [line.split() for line in EXPECTED.strip().splitlines()]
PAIRS = [(row[0], column, cell) for row in _ROWS[1:] for column, cell in zip(_ROWS[0][1:], row[1:])]


@pytest.mark.parametrize("first, second, expected", PAIRS)
def test_every_pair_of_kinds_merges_as_documented_in_every_place(first, second, expected):
    want = kind_type(KINDS[expected.rstrip("!~")][1])
    a, b = KINDS[first], KINDS[second]
    # the Python inference, value by value
    inferrer = Inferrer()
    for value in (a[0], b[0]):
        inferrer.absorb({"x": value})
    assert inferrer.result()["x"].dataType == want
    assert inferrer.conflicts == expected.endswith("!")
    # the kind merge of the Arrow scan's parts
    clashes, taken = [], []
    merged = merge_kinds({"x": a[1]}, {"x": b[1]}, FieldPath(), clashes, taken)
    assert kind_type(merged["x"]) == want
    assert clashes == ([FieldPath(("x",))] if expected.endswith("!") else [])
    assert taken == ([FieldPath(("x",))] if expected.endswith("~") else [])
    # merge_types, over the inferred types
    assert merge_types(kind_type(a[1]), kind_type(b[1])) == want
    # the Arrow scan of a file of the two records equals the Python scan
    data = b"".join(json.dumps({"x": value}).encode() + b"\n" for value in (a[0], b[0]))
    fast, slow = pyarrow_scan.scan_bytes(data), pyarrow_scan.scan_bytes(data, use_arrow=False)
    assert fast["schema"] == slow["schema"] == T.StructType([T.StructField("x", want)])
    assert fast["conflict_lines"] == slow["conflict_lines"] == ([2] if expected.endswith("!") else [])


@pytest.mark.parametrize("first, second, expected", [
    (T.BinaryType(), T.StringType(), T.BinaryType()), (T.StringType(), T.BinaryType(), T.StringType()),
    (T.NullType(), T.BinaryType(), T.BinaryType()), (T.BinaryType(), T.LongType(), T.BinaryType()),
    (T.StructType([]), T.BinaryType(), T.BinaryType()), (T.BinaryType(), T.ArrayType(T.NullType()), T.BinaryType())])
def test_binary_from_a_framing_merges_like_any_scalar(first, second, expected):
    """BINARY has no JSON value (a framing's schema has it: DynamoDB B); across files it merges by
    the same table: the first seen wins, a STRING takes it, empty values never conflict."""
    assert merge_types(first, second) == expected


def test_the_merge_table_covers_every_pair_of_tags_once():
    tags = ["null", "boolean", "bigint", "double", "string", "binary", "struct", "array"]
    assert sorted(typerules.MERGE) == sorted(tags) and all(sorted(row) == sorted(tags) for row in typerules.MERGE.values())


# ---------------------------------------------------------------- fitting

# Values of each kind: some fit some columns, some do not (the table's SOME cells need both).
SAMPLES = {
    "boolean": [True, False],
    "bigint": [0, -1, 127, 128, 2**31, -2**31 - 1, 2**53 + 1, 2**63 - 1, -2**63, 2**63, 10**30],
    "double": [0.0, 1.5, -2.25, 1e39, 1.234, 1e300],
    "string": ["x", "1", "true", "2026-01-31", "2026-02-30", "2026-01-01T10:00:00Z", "2026-01-01 10:00"],
    "struct": [{"a": 1}], "array": [[1]],
}
COLUMNS = [T.StringType(), T.BooleanType(), T.LongType(), T.IntegerType(), T.ShortType(), T.ByteType(),
           T.DoubleType(), T.FloatType(), T.DecimalType(10, 2), T.DateType(), T.TimestampType(), T.BinaryType(),
           T.StructType([T.StructField("a", T.LongType())]), T.ArrayType(T.LongType()),
           T.MapType(T.StringType(), T.LongType())]
CELLS = [(kind, column) for kind in SAMPLES for column in COLUMNS]


@pytest.mark.parametrize("kind, column", CELLS, ids=[f"{k}-{c.simpleString()}" for k, c in CELLS])
def test_the_python_walk_fits_values_as_the_table_says(kind, column):
    python, _ = typerules.fits(kind, column)
    if python == typerules.NESTED:
        return  # the Fitter walks the fields / elements
    fitted = [fit_atomic(v, column)[0] for v in SAMPLES[kind]]
    assert {typerules.ALL: all(fitted), typerules.NONE: not any(fitted),
            typerules.SOME: any(fitted) and not all(fitted)}[python], fitted


# pyarrow parses of each kind (within 64 bits; strings of one timestamp shape for SHAPE cells)
ARROW_SAMPLES = {"boolean": [True, False, None], "bigint": [0, -1, 127, 128, 2**31, 2**53 + 1, -2**63, None],
                 "double": [0.0, 1.5, -2.25, 1e39, 1.234, None], "string": SAMPLES["string"] + [None]}
SHAPED = ["2026-01-01T10:00:00Z", "2026-03-01T00:00:00+02:00", None]
ARROW_CELLS = [(kind, column) for kind in ARROW_SAMPLES for column in COLUMNS]


@pytest.mark.parametrize("kind, column", ARROW_CELLS, ids=[f"{k}-{c.simpleString()}" for k, c in ARROW_CELLS])
def test_the_arrow_fast_path_converts_exactly_what_the_walk_writes(kind, column):
    python, arrow = typerules.fits(kind, column)
    values = SHAPED if arrow == typerules.SHAPE else ARROW_SAMPLES[kind]
    seen = T.StructType([T.StructField("x", kind_type(kind))])
    ts = {FieldPath(("x",)): "iso8601_zone"} if arrow == typerules.SHAPE else {}
    fast = typed_rows.typed_fits(T.StructType([T.StructField("x", column)]), seen, ts)
    assert fast == (arrow in (typerules.CAST, typerules.CHECK, typerules.SHAPE))
    target = to_arrow_type(typed_rows.declared_schema(column))
    walked = [fit_atomic(v, column) if v is not None else (True, None) for v in values]
    if fast:
        try:
            got = typed_rows.conform(pa.array(values), target).to_pylist()
        except typed_rows.DoesNotConvert:
            assert arrow != typerules.CAST and not all(ok for ok, _ in walked)
        else:
            assert all(ok for ok, _ in walked)
            assert got == _walked(walked, target)
    # a field that never fits moves to the rescued column as it is, without a walk
    moved = typed_rows.moved_fields(pa.table({"x": pa.array(values)}), {FieldPath(("x",)): column})
    assert (moved is not None) == (python == typerules.NONE and kind != "double"), moved  # (doubles: walked)
    if moved is not None:  # (the moved values: those not null)
        assert moved[0].column_names == [] and moved[1][0][1].values.to_pylist() == [v for v in values if v is not None]


def _walked(walked: list, target: pa.DataType) -> list:
    """What the walk lands: the Fitter's values read back by pyarrow (typed_rows.walked_batch)."""
    schema = typed_rows.walk_schema(pa.schema([("x", target)]))
    table = pyarrow_scan.arrow_read(b"\n".join(json.dumps({"x": w}).encode() for _, w in walked), schema, "error")
    return typed_rows.conform(table.column("x").combine_chunks(), target).to_pylist()
