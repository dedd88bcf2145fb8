"""The two type rules, as tables: how the types of two values merge during inference, and whether a
value fits a column. The Python inference (schema.Inferrer) and the kind merge of the Arrow scan
(pyarrow_scan), the Python walk (records.Fitter) and the Arrow fast path (typed_rows) all look
their answers up here. Pure Python, no Spark.

A value's kind is its JSON type: null, boolean, bigint (any integer), double, string, struct,
array. Inference accumulates kinds as plain values: None, the scalar names, {name: kind} for a
struct, [kind] for an array; a kind "says nothing yet" (unknown) when it is null or containers of
only that.
"""

from __future__ import annotations

from pyspark.sql import types as T

from lake_assets.core.fieldpath import ELEMENT

NULL, BOOLEAN, BIGINT, DOUBLE, STRING, STRUCT, ARRAY = "null", "boolean", "bigint", "double", "string", "struct", "array"
BINARY = "binary"  # no JSON value has it: the scan's schema has it where a framing says so (DynamoDB B)
CONTAINERS = (STRUCT, ARRAY)


def _grid(text: str) -> dict[str, dict[str, str]]:
    rows = [line.split() for line in text.strip().splitlines()]
    return {row[0]: dict(zip(rows[0][1:], row[1:])) for row in rows[1:]}


# ---------------------------------------------------------------- merging

# first (seen before) x second: FIRST keeps the first, SECOND takes the second, WIDEN makes DOUBLE,
# CHILDREN merges the two containers' fields / elements, TAKES keeps a STRING (it holds any value
# as its JSON text), CLASH keeps the first and counts a type conflict (first seen wins), EMPTY:
# FIRST if the second is empty (null, [], {} only), else SECOND if the first is unknown, else CLASH.
FIRST, SECOND, WIDEN, CHILDREN, TAKES, CLASH, EMPTY = "first", "second", "double", "merge", "takes", "clash", "empty"
MERGE = _grid("""
    first\\second  null    boolean bigint  double  string  binary  struct  array
    null           first   second  second  second  second  second  second  second
    boolean        first   first   clash   clash   clash   clash   empty   empty
    bigint         first   clash   first   double  clash   clash   empty   empty
    double         first   clash   double  first   clash   clash   empty   empty
    string         first   takes   takes   takes   first   takes   takes   takes
    binary         first   clash   clash   clash   clash   first   empty   empty
    struct         first   empty   empty   empty   empty   empty   merge   empty
    array          first   empty   empty   empty   empty   empty   empty   merge
""")


def settle(second_empty: bool, first_unknown: bool) -> str:
    """What an EMPTY cell decides."""
    return FIRST if second_empty else SECOND if first_unknown else CLASH


VALUE_TAG = {type(None): NULL, bool: BOOLEAN, int: BIGINT, float: DOUBLE, str: STRING, dict: STRUCT, list: ARRAY}


def value_tag(value) -> str:
    """The kind of a parsed JSON value (of a subclass as of its base; of anything else, STRING)."""
    tag = VALUE_TAG.get(value.__class__)
    return tag if tag is not None else next((t for cls, t in VALUE_TAG.items() if isinstance(value, cls)), STRING)


TYPE_TAG = {T.NullType: NULL, T.BooleanType: BOOLEAN, T.LongType: BIGINT, T.DoubleType: DOUBLE, T.StringType: STRING,
            T.BinaryType: BINARY, T.StructType: STRUCT, T.ArrayType: ARRAY}  # of the types inference gives


def kind_tag(kind) -> str:
    return NULL if kind is None else kind if isinstance(kind, str) else STRUCT if isinstance(kind, dict) else ARRAY


def unknown_kind(kind) -> bool:
    """A kind that says nothing yet: null, or only empty arrays and objects."""
    if isinstance(kind, dict):
        return all(unknown_kind(v) for v in kind.values())
    if isinstance(kind, list):
        return unknown_kind(kind[0])
    return kind is None


def is_empty(value) -> bool:
    """A JSON value with nothing in it: null, [], {}, or arrays and objects of those only."""
    if isinstance(value, dict):
        return all(is_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(is_empty(v) for v in value)
    return value is None


def merge_kinds(a, b, path=None, clashes: list | None = None, taken: list | None = None):
    """Two kinds merged (`a` first) by MERGE. With `path` (a FieldPath), the paths of type
    conflicts go to `clashes` and those where a STRING took another type to `taken`."""
    rule = MERGE[kind_tag(a)][kind_tag(b)]
    if rule == EMPTY:
        rule = settle(unknown_kind(b), unknown_kind(a))
    if rule == CHILDREN:
        if isinstance(a, dict):
            out = dict(a)
            for k, v in b.items():
                out[k] = merge_kinds(out.get(k), v, path and path.child(k), clashes, taken)
            return out
        return [merge_kinds(a[0], b[0], path and path.child(ELEMENT), clashes, taken)]
    if path is not None and rule in (CLASH, TAKES):
        (clashes if rule == CLASH else taken).append(path)
    return b if rule == SECOND else DOUBLE if rule == WIDEN else a


_SCALARS = {BOOLEAN: T.BooleanType(), BIGINT: T.LongType(), DOUBLE: T.DoubleType(), STRING: T.StringType(),
            BINARY: T.BinaryType()}


def kind_type(kind) -> T.DataType:
    """The Spark type of a kind (NullType where it is still unknown)."""
    if kind is None:
        return T.NullType()
    if isinstance(kind, dict):
        return T.StructType([T.StructField(k, kind_type(v)) for k, v in kind.items()])
    if isinstance(kind, list):
        return T.ArrayType(kind_type(kind[0]))
    return _SCALARS[kind]


def type_kind(t: T.DataType):
    """The kind of an inferred Spark type (TypeError for a type inference never gives)."""
    if isinstance(t, T.NullType):
        return None
    if isinstance(t, T.StructType):
        return {f.name: type_kind(f.dataType) for f in t.fields}
    if isinstance(t, T.ArrayType):
        return [type_kind(t.elementType)]
    for kind, scalar in _SCALARS.items():
        if t == scalar:
            return kind
    raise TypeError(f"{t.simpleString()} is not an inferred type")


# ---------------------------------------------------------------- fitting

# A value of a kind (row) into a column type (column). Before the slash, the Python walk
# (records.fit_atomic): ALL of its values fit, SOME (checked value by value), NONE (rescued);
# NESTED: the fields / elements decide. After it, the Arrow fast path on pyarrow's parse
# (typed_rows.conform): CAST converts without a check, CHECK converts checking each value (one
# that would be rescued sends the file to the walk), SHAPE like CHECK for strings of one
# TS_SHAPES shape only, WALK: the Fitter does it. (A bigint is SOME for BIGINT and DOUBLE in
# Python — integers past 64 bits are rescued — while pyarrow's are all within 64 bits. A null is
# null in any column: the walk and the fast path keep it before they ask.)
ALL, SOME, NONE, NESTED = "all", "some", "none", "nested"
CAST, CHECK, SHAPE, WALK = "cast", "check", "shape", "walk"
FITS = _grid("""
    kind\\column string   boolean  bigint     int        smallint   tinyint    double     float      decimal   date       timestamp  binary     struct       array        map         other
    null        none     none     none       none       none       none       none       none       none      none       none       none       none         none         none        none
    boolean     all/cast all/cast none       none       none       none       none       none       none      none       none       none       none         none         none        none
    bigint      all/cast none     some/cast  some/check some/check some/check some/cast  some/check some/walk none       none       none       none         none         none        none
    double      all/walk none     none       none       none       none       all/cast   some/check some/walk none       none       none       none         none         none        none
    string      all/cast none     none       none       none       none       none       none       none      some/check some/shape some/check none         none         none        none
    struct      all/walk none     none       none       none       none       none       none       none      none       none       none       nested       none         nested/walk none
    array       all/walk none     none       none       none       none       none       none       none      none       none       none       none         nested       none        none
""")

COLUMN_TAG = {T.StringType: "string", T.BooleanType: "boolean", T.LongType: "bigint", T.IntegerType: "int",
              T.ShortType: "smallint", T.ByteType: "tinyint", T.DoubleType: "double", T.FloatType: "float",
              T.DecimalType: "decimal", T.DateType: "date", T.TimestampType: "timestamp", T.BinaryType: "binary",
              T.StructType: "struct", T.ArrayType: "array", T.MapType: "map"}


_CELLS = {(kind, column): (cell.partition("/")[0], cell.partition("/")[2] or (NESTED if cell == NESTED else WALK))
          for kind, row in FITS.items() for column, cell in row.items()}


def fits(kind: str, column: T.DataType) -> tuple[str, str]:
    """(Python walk, Arrow fast path) for values of `kind` (a tag) in a column of type `column`."""
    return _CELLS[kind, COLUMN_TAG.get(type(column), "other")]
