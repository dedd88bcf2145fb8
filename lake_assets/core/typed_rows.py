"""Bronze rows in the table's types, as Arrow: pyarrow's parse of a file conformed to the table's
columns (typed_fits says when that equals what the Fitter would write), fields that can never fit
moved to the rescued column as they are, and records walked through the Fitter read back by
pyarrow in the same types. The engine's from_json is never used: Sail's rounds some doubles
differently from their text."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from lake_assets.core import framing
from lake_assets.core.fieldpath import ELEMENT, FieldPath, join
from lake_assets.core.pyarrow_scan import arrow_read
from lake_assets.core.typerules import BIGINT, BOOLEAN, CAST, CHECK, NONE, SHAPE, STRING, TYPE_TAG, fits
from lake_assets.errors import LakeError


class DoesNotConvert(LakeError):
    """A value of a pyarrow column does not convert to its column's type as the Fitter would."""


def misfits(target, seen, ts: dict, path: FieldPath, out: dict) -> None:
    """Into `out`, {FieldPath: target type (None: not in `target`)} for the fields of `seen` whose
    values conform cannot turn into `target` as the Fitter would write them (typerules.FITS)."""
    from pyspark.sql import types as T

    from lake_assets.core.schema import drop_unknown

    if isinstance(seen, T.NullType):
        return
    if isinstance(target, T.StructType) and isinstance(seen, T.StructType):
        fields = {f.name: f.dataType for f in target.fields}
        for f in seen.fields:
            if isinstance(f.dataType, T.NullType):
                continue
            if f.name not in fields and drop_unknown(f.dataType) is None:
                continue  # only empty values: left out, as the Fitter leaves them out
            if f.name not in fields:
                out[path.child(f.name)] = None
            else:
                misfits(fields[f.name], f.dataType, ts, path.child(f.name), out)
        return
    if isinstance(target, T.ArrayType) and isinstance(seen, T.ArrayType):
        misfits(target.elementType, seen.elementType, ts, path.child(ELEMENT), out)
        return
    _, arrow = fits(TYPE_TAG[type(seen)], target)
    if not (arrow in (CAST, CHECK) or arrow == SHAPE and path in ts):
        out[path] = target


def moved_fields(table, found: dict):
    """(table without the misfit fields, [(FieldPath, their Leaves)]) when each misfit is a field
    the Fitter would rescue whatever its value — an unknown field (of any type), or strings,
    booleans or integers where the column's type never takes them (inside arrays too) — so the
    values move to the rescued column as they are (or an unknown field mode `none` ignores); else None."""
    values = []
    for path, target in found.items():
        leaves = leaves_at(table, path)
        if leaves is None or not (target is None or leaves.values.type in _ARROW_TAG
                                  and _never_fits(target, leaves.values.type)):
            return None
        values.append((path, leaves))
    for path, _ in values:
        top, *below = path.steps
        column = _array(table.column(top))
        table = table.drop_columns([top])
        if below:
            table = table.append_column(top, _drop_field(column, below))
    return table, values


# The pyarrow types whose values move to the rescued column as they are, as typerules kinds.
_ARROW_TAG = {pa.string(): STRING, pa.bool_(): BOOLEAN, pa.int64(): BIGINT}


def _never_fits(target, arrow_type) -> bool:
    """Whether no value of this pyarrow type (one of _ARROW_TAG) fits `target` (typerules.FITS;
    None: an unknown field, rescued or ignored whatever its value)."""
    return target is None or fits(_ARROW_TAG[arrow_type], target)[0] == NONE


def _array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array, without copying the usual single chunk (combine_chunks copies)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


class Leaves:
    """The non-null values at one field path of a table: for each, its row, and per step its place
    in the document — the field's index in its struct, or its element's index in an array."""

    def __init__(self, rows: np.ndarray, places: list, values: pa.Array):
        self.rows, self.places, self.values = rows, places, values


def leaves_at(table, path: FieldPath) -> Leaves | None:
    """The Leaves at a field path (null wherever a parent is null); None if there is no such field."""
    import pyarrow.compute as pc

    top, *below = path.steps
    if not isinstance(top, str) or top not in table.column_names:
        return None
    column = _array(table.column(top))
    rows = np.arange(table.num_rows, dtype=np.int64)
    places: list = [table.column_names.index(top)]
    for step in below:
        if step is ELEMENT and pa.types.is_list(column.type):
            lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
            rows, starts = np.repeat(rows, lengths), np.repeat(np.cumsum(lengths) - lengths, lengths)
            places = [p if isinstance(p, int) else np.repeat(p, lengths) for p in places]
            column = column.flatten()  # (leaves out the values behind null lists)
            places.append(np.arange(len(column), dtype=np.int64) - starts)
        elif isinstance(step, str) and pa.types.is_struct(column.type) and column.type.get_field_index(step) >= 0:
            places.append(column.type.get_field_index(step))
            column = column.flatten()[column.type.get_field_index(step)]
        else:
            return None
    valid = np.asarray(column.is_valid())
    return Leaves(rows[valid], [p if isinstance(p, int) else p[valid] for p in places], column.filter(valid))


def rescued_column(n: int, moved: list, uri: str, record) -> pa.Array:
    """The rescued column of `n` rows holding the moved fields' Leaves [(FieldPath, Leaves)]: per
    row the JSON text rescued_json writes for the Fitter's rescue — keys the field paths with array
    elements by position (`signals[0].unit`), in document order, then `_file_path` — or null.
    `record(row)` parses a row's line, for values whose text arrow does not keep (objects, doubles)."""
    import pyarrow.compute as pc

    from lake_assets.core.layout import RESCUED_FILE_PATH

    if not moved:
        return pa.nulls(n, pa.string())
    width = max(len(path.steps) for path, _ in moved)
    rows, texts, places = [], [], [[] for _ in range(width)]
    for path, leaves in moved:
        if leaves.values.type in _ARROW_TAG:
            text = _fragments(path, leaves)
        else:
            leaves, text = _parsed_fragments(path, leaves, record)
        rows.append(leaves.rows)
        texts.append(text)
        for i in range(width):
            place = leaves.places[i] if i < len(path.steps) else 0
            places[i].append(np.broadcast_to(np.int64(place), len(leaves.rows)) if isinstance(place, int) else place)
    rows_, keys = np.concatenate(rows), [np.concatenate(p) for p in places]
    order = np.lexsort(keys[::-1] + [rows_])
    counts = np.bincount(rows_, minlength=n)
    offsets = pa.array(np.concatenate(([0], np.cumsum(counts))), pa.int64())
    listed = pa.LargeListArray.from_arrays(offsets, pa.concat_arrays(texts).take(pa.array(order)))
    tail = "," + orjson.dumps(RESCUED_FILE_PATH).decode() + ":" + orjson.dumps(uri).decode() + "}"
    text = _join("{", pc.binary_join(listed, pa.scalar(",", pa.large_string())), tail)
    return pc.if_else(pa.array(counts > 0), text, pa.scalar(None, pa.large_string())).cast(pa.string())


def _parsed_fragments(path: FieldPath, leaves: Leaves, record) -> tuple[Leaves, pa.Array]:
    """`"path":value` of the leaves whose value arrow cannot write back as the JSON it read, taken
    from the parsed line (`record(row)`) as the Fitter takes it; empty values ([], {}) left out."""
    from lake_assets.core.typerules import is_empty

    keep, texts = [], []
    for j, row in enumerate(leaves.rows.tolist()):
        value, steps = record(row), []
        for i, step in enumerate(path.steps):
            steps.append(int(leaves.places[i][j]) if step is ELEMENT else step)
            value = value[steps[-1]]
        if not is_empty(value):
            keep.append(j)
            texts.append(_rescued_key(FieldPath(tuple(steps)).format()) + orjson.dumps(value).decode())
    picked = np.array(keep, np.int64)
    kept = Leaves(leaves.rows[picked], [p if isinstance(p, int) else p[picked] for p in leaves.places],
                  leaves.values.take(pa.array(picked)))
    return kept, pa.array(texts, pa.large_string())


def _rescued_key(key: str) -> str:
    """'"key":' as rescued_json writes it (a data field named like the file key backtick-quoted)."""
    from lake_assets.core.layout import RESCUED_FILE_PATH

    return orjson.dumps("`" + key + "`" if key == RESCUED_FILE_PATH else key).decode() + ":"


def _fragments(path: FieldPath, leaves: Leaves) -> pa.Array:
    """`"path":value` of each leaf (a string, boolean or integer), as the Fitter's rescue keys it
    and orjson writes it (large_string)."""
    import pyarrow.compute as pc

    def quoted(text: str) -> str:  # JSON string contents, escaped as orjson escapes them
        return orjson.dumps(text).decode()[1:-1]

    values = leaves.values
    if pa.types.is_string(values.type):
        escape = pc.match_substring_regex(values, r'[\x00-\x1f"\\]')
        json_text = _join('"', values, '"')
        if pc.any(escape).as_py():
            exact = pa.array([orjson.dumps(v).decode() for v in values.filter(escape).to_pylist()], pa.large_string())
            json_text = pc.replace_with_mask(json_text, escape, exact)
    elif pa.types.is_boolean(values.type):
        json_text = pc.if_else(values, "true", "false")
    else:
        json_text = values.cast(pa.string())
    if not path.in_array:
        return _join(_rescued_key(path.format()), json_text)
    pieces, text = [], None  # the key: constant text, and each array element's position between
    for i, step in enumerate(path.steps):
        if step is ELEMENT:
            pieces += [quoted((text or "") + "["), pa.array(leaves.places[i]).cast(pa.string())]
            text = "]"
        else:
            text = join(text, step)
    return _join('"', *pieces, quoted(text) + '":', json_text)


def _join(*parts) -> pa.Array:
    """Texts and string arrays concatenated element by element (large_string)."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(*[pa.scalar(p, pa.large_string()) if isinstance(p, str) else
                                         p.cast(pa.large_string()) for p in parts], pa.scalar("", pa.large_string()))


def _drop_field(arr, steps: list):
    """A struct (or list of structs: ELEMENT) array without the field at `steps` below it."""
    if steps[0] is ELEMENT:
        inner = _drop_field(arr.values, steps[1:])
        return pa.ListArray.from_arrays(arr.offsets, inner, type=pa.list_(pa.field(arr.type.value_field.name, inner.type)),
                                        mask=arr.is_null())
    fields, children = [], []
    for i in range(arr.type.num_fields):
        field, child = arr.type.field(i), arr.field(i)
        if field.name == steps[0]:
            if len(steps) == 1:
                continue
            child = _drop_field(child, steps[1:])
            field = pa.field(field.name, child.type)
        fields.append(field)
        children.append(child)
    return pa.StructArray.from_arrays(children, fields=fields, mask=arr.is_null())


def typed_batch(out: pa.Schema, declared: pa.Schema, table, numbers, rescued: pa.Array, f: dict) -> pa.RecordBatch:
    n = table.num_rows
    columns = [conform(_array(table.column(field.name)), field.type)
               if field.name in table.column_names else pa.nulls(n, field.type) for field in declared]
    if f.get("partition_values"):
        columns, rescued = _partition_columns(columns, declared, f, rescued)
    repeat = pa.array(np.zeros(n, np.int64))
    lines = pa.array(numbers, pa.int64())
    # _record: the 0-based position where records have no line of their own (framing.per_record)
    records = pa.compute.subtract(lines, 1) if f.get("per_record") else pa.nulls(n, pa.int64())
    columns += [rescued, pa.array([f["uri"]]).take(repeat), lines, records, pa.array([f["day"]]).take(repeat)]
    return pa.RecordBatch.from_arrays(columns, schema=out)


def _partition_columns(columns: list, declared: pa.Schema, f: dict, rescued: pa.Array) -> tuple[list, pa.Array]:
    """The file's `k=v` folder values in their columns where the record has no value of its own
    (a record's own field wins; nothing is overwritten). A folder value its column's type cannot
    hold (a hinted INT folder `x`) is rescued, keyed by the column name."""
    import pyarrow.compute as pc

    from lake_assets.core.layout import RESCUED_FILE_PATH
    from lake_assets.core.records import rescued_json

    misfit = {}
    for i, field in enumerate(declared):
        text = f["partition_values"].get(field.name)
        if text is None:
            continue
        try:
            value = pa.array([text]).cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            misfit[FieldPath((field.name,)).format()] = text
            continue
        columns[i] = pc.coalesce(columns[i], value.take(pa.array(np.zeros(len(columns[i]), np.int64))))
    if misfit:
        rows = [orjson.loads(r) if r else {} for r in rescued.to_pylist()]
        rescued = pa.array([rescued_json({**{k: v for k, v in r.items() if k != RESCUED_FILE_PATH}, **misfit}, f["uri"])
                            for r in rows], pa.string())
    return columns, rescued


def partition_schema(values: dict[str, str]):
    """The inferred types of a file's partition folder values: integers BIGINT, other numbers
    DOUBLE, true / false BOOLEAN, anything else STRING (hints fix them like any field)."""
    import re

    from pyspark.sql import types as T

    def kind(text: str):
        if re.fullmatch(r"-?[0-9]{1,18}", text):
            return T.LongType()
        if re.fullmatch(r"-?[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?", text):
            return T.DoubleType()
        return T.BooleanType() if text in ("true", "false") else T.StringType()
    return T.StructType([T.StructField(k, kind(v)) for k, v in values.items()])


def walked_batch(out: pa.Schema, declared: pa.Schema, fitter, walk: list, f: dict) -> pa.RecordBatch:
    """Lines [(number, raw)] walked through the Fitter (malformed ones left out: the quarantine
    has them), in the declared types: read back by pyarrow's JSON reader, or built value by value
    where the table has a type that reader cannot build (MAP, ...)."""
    from lake_assets.core.records import Malformed, parse_line, rescued_json

    numbers, records, rescued = [], [], []
    for number, raw in walk:
        try:
            clean, rescue, _ = fitter.fit(parse_line(raw))
        except Malformed:
            continue
        numbers.append(number)
        records.append(clean)
        rescued.append(rescued_json(rescue, f["uri"]))
    schema = walk_schema(declared)
    if schema is not None:
        non_finite = any(b"NaN" in raw or b"Infinity" in raw for _, raw in walk)
        dumps = framing.dumps_non_finite if non_finite else orjson.dumps  # orjson writes NaN as null
        table = arrow_read(b"\n".join(dumps(r) for r in records), schema, "error") if records \
            else pa.table([pa.nulls(0, field.type) for field in schema], schema=schema)
        if table is None:
            raise RuntimeError(f"{f['uri']}: pyarrow cannot read the Fitter's records back")
    else:
        row = pa.struct(list(declared))
        table = pa.Table.from_batches([pa.RecordBatch.from_struct_array(
            pa.array([arrow_value(r, row) for r in records], row))], schema=declared)
    return typed_batch(out, declared, table, np.array(numbers, np.int64), pa.array(rescued, pa.string()), f)


def arrow_value(value, t: pa.DataType):
    """A Fitter output value as pyarrow takes it for type `t` (its timestamps and dates are text)."""
    import datetime as dt
    import decimal

    if value is None:
        return None
    if pa.types.is_struct(t):
        return {field.name: arrow_value(value.get(field.name), field.type) for field in t}
    if pa.types.is_list(t):
        return [arrow_value(v, t.value_type) for v in value]
    if pa.types.is_map(t):
        return [(k, arrow_value(v, t.item_type)) for k, v in value.items()]
    if pa.types.is_timestamp(t):
        return dt.datetime.fromisoformat(value)
    if pa.types.is_date32(t):
        return dt.date.fromisoformat(value)
    if pa.types.is_decimal(t):
        return decimal.Decimal(str(value))
    return value


def walk_schema(declared: pa.Schema) -> pa.Schema | None:
    """The explicit schema pyarrow reads the Fitter's records back with (DATE as its text, which
    conform converts), or None when a declared type is one pyarrow's JSON reader cannot build
    (MAP, BINARY, ...)."""
    def text(t):
        if pa.types.is_struct(t):  # (landings room: pa.field(name, None) raised for a MAP / BINARY inside)
            types = [text(f.type) for f in t]
            return None if any(x is None for x in types) else pa.struct([pa.field(f.name, x) for f, x in zip(t, types)])
        if pa.types.is_list(t):
            inner = text(t.value_type)
            return None if inner is None else pa.list_(pa.field(t.value_field.name, inner))
        if pa.types.is_date32(t):
            return pa.string()
        simple = (pa.types.is_string(t) or pa.types.is_boolean(t) or pa.types.is_integer(t)
                  or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)
                  or t == pa.timestamp("us"))
        return t if simple else None
    fields = [(f.name, text(f.type)) for f in declared]
    return None if any(t is None for _, t in fields) else pa.schema(fields)


def conform(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """An arrow array of an inferred type as `target`, which typed_fits approved, with the values
    the Fitter would write; DoesNotConvert when some value would be rescued instead."""
    import pyarrow.compute as pc

    if arr.type == target:
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    if pa.types.is_struct(target):
        names = {arr.type.field(i).name for i in range(arr.type.num_fields)}
        children = [conform(arr.field(f.name), f.type) if f.name in names else pa.nulls(len(arr), f.type)
                    for f in target]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=arr.is_null())
    if pa.types.is_list(target):
        return pa.ListArray.from_arrays(arr.offsets, conform(arr.values, target.value_type), type=target,
                                        mask=arr.is_null())
    if pa.types.is_binary(target):  # (landings room) base64 strings, checked value by value (framing.from_base64)
        decoded = framing.decoded_base64(arr)
        if decoded is None:
            raise DoesNotConvert()
        return decoded
    if pa.types.is_timestamp(target):  # TS_SHAPES strings (checked): all with a zone, or all without (UTC)
        for zone in ("UTC", None):
            try:
                return pc.cast(arr, pa.timestamp("us", zone)).cast(target)
            except pa.ArrowInvalid:
                pass
        raise DoesNotConvert()
    try:
        if pa.types.is_date32(target):  # YYYY-MM-DD of a real day, as records.fit_atomic wants
            if pc.all(pc.match_substring_regex(arr, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")).as_py() is False \
                    or pc.any(pc.starts_with(arr, "0000")).as_py():
                raise DoesNotConvert()
            return pc.cast(arr, target)
        if pa.types.is_float32(target) and (pc.max(pc.abs(arr)).as_py() or 0) > 3.4028234e38:
            raise DoesNotConvert()
        # bigint -> double past 2**53 and -> float: the nearest, as the Fitter writes them;
        # bigint -> int / smallint / tinyint: checked (an overflow is rescued, not wrapped)
        return pc.cast(arr, target, safe=not pa.types.is_floating(target))
    except pa.ArrowInvalid:
        raise DoesNotConvert() from None


def declared_schema(t):
    """The schema the typed source declares: TIMESTAMP as TIMESTAMP_NTZ (holding UTC), since a
    Python data source cannot declare a zoned timestamp on every engine; good_rows casts back."""
    from pyspark.sql import types as T

    if isinstance(t, T.StructType):
        return T.StructType([T.StructField(f.name, declared_schema(f.dataType), f.nullable) for f in t.fields])
    if isinstance(t, T.ArrayType):
        return T.ArrayType(declared_schema(t.elementType), t.containsNull)
    if isinstance(t, T.MapType):
        return T.MapType(declared_schema(t.keyType), declared_schema(t.valueType), t.valueContainsNull)
    return T.TimestampNTZType() if isinstance(t, T.TimestampType) else t


def typed_fits(target, seen, ts: dict) -> bool:
    """True when conform can turn arrow's parse of `seen` values into `target` as the Fitter
    would write them (no misfits)."""
    found: dict = {}
    misfits(target, seen, ts, FieldPath(), found)
    return not found
