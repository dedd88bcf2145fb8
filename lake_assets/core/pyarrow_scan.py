"""One landing file's records inferred (schema, record count, malformed lines, type conflicts):
by pyarrow's JSON reader where the result provably equals the Python Inferrer's (schema.Inferrer:
first seen wins), else line by line in Python. Pure functions over bytes; no Spark, no storage.

Malformed lines are left out before pyarrow reads the rest. A file whose fields conflict in type
is split by the JSON type of the field pyarrow names, and each part read alone. `parsed` in the
result is what lake_typed (reader.py) turns into bronze rows."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pyarrow as pa

from lake_assets.core.fieldpath import ELEMENT, FieldPath
from lake_assets.core.records import LONG_INTEGER, MAX_NESTING
from lake_assets.core.typerules import is_empty, kind_type, merge_kinds

MAX_TRACKED_MALFORMED = 1000

# Timestamp strings that pyarrow's cast reads to the same instant as records.fit_atomic does: a
# hinted TIMESTAMP field holding only strings of one shape goes typed. ISO 8601, years 1000-8999
# (so no offset leaves Python's range), minutes, optional seconds with up to 6 decimals, with a
# zone (Z, +HH:MM, +HHMM) or without one (read as UTC). shape -> RE2 pattern over the whole value
_ISO = (r"^[1-8][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[T ]([01][0-9]|2[0-3]):[0-5][0-9]"
        r"(:[0-5][0-9](\.[0-9]{1,6})?)?")
TS_SHAPES = {"iso8601_zone": _ISO + r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])$", "iso8601_utc": _ISO + "$"}


def scan_bytes(data: bytes, *, use_arrow: bool = True) -> dict:
    """Infer one file's records: {records, malformed (line numbers), schema, conflicts,
    conflict_lines, engine, and for engine "arrow" `parsed`: what lake_typed needs}. pyarrow's
    JSON reader does it when it can prove the result equals the Python Inferrer's; anything
    unusual falls back to Python."""
    if use_arrow:
        result = arrow_scan(data)
        if result is not None:
            return result
    return _python_scan(data)


def _python_scan(data: bytes) -> dict:
    from lake_assets.core.records import Malformed, parse_line
    from lake_assets.core.schema import Inferrer

    lines = data.split(b"\n")
    inferrer, malformed, records, conflict_lines = Inferrer(), [], 0, []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = parse_line(raw)
        except Malformed:
            malformed.append(number)
            continue
        before = inferrer.conflicts
        inferrer.absorb(record)
        records += 1
        if inferrer.conflicts != before:
            conflict_lines.append(number)
    return {"records": records, "malformed": malformed, "schema": inferrer.result(), "conflicts": inferrer.conflicts,
            "conflict_lines": conflict_lines, "engine": "python"}


def arrow_read(data: bytes, schema: pa.Schema | None = None, unexpected: str = "infer"):
    table, _ = _arrow_try(data, schema, unexpected)
    return table


def _arrow_try(data: bytes, schema: pa.Schema | None = None, unexpected: str = "infer"):
    """(pyarrow's table of NDJSON `data`, None), or (None, why it cannot read it). `schema` types
    the fields it names; `unexpected` ("infer" / "error") says what happens to the others."""
    import pyarrow.json as pj

    if len(data) + 1 >= 2**31:
        return None, "too large"
    def read(schema, unexpected):
        parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected) if schema else None
        return pj.read_json(pa.BufferReader(data), parse_options=parse,
                            read_options=pj.ReadOptions(block_size=max(len(data) + 1, 1 << 16), use_threads=False))

    try:
        table = read(schema, unexpected)
        if _valid(table):
            return table, None
        if schema is None:
            # pyarrow infers an array whose first element is null into list offsets that run past
            # the values (pyarrow 26); read with the inferred types given, it builds them right
            table = read(table.schema, "error")
            if _valid(table):
                return table, None
        return None, "pyarrow built an invalid table"
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowIndexError,
            OverflowError) as exc:
        return None, str(exc)


def _valid(table) -> bool:
    try:
        table.validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _strings_for_timestamps(t: pa.DataType) -> pa.DataType:
    """`t` with the timestamps arrow inferred from strings typed string again (their text is the value)."""
    if pa.types.is_timestamp(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _strings_for_timestamps(f.type)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_strings_for_timestamps(t.value_type))
    return t


def _line_bounds(data: bytes):
    """(start, end) byte offsets of each line of data.split(b"\n"), end excluding a trailing \r."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(buf)])).astype(np.int64)
    if len(buf):
        last = np.clip(ends - 1, 0, len(buf) - 1)
        ends = ends - ((ends > starts) & (buf[last] == 13))
    return buf, starts, ends


def arrow_scan(data: bytes) -> dict | None:
    """scan_bytes by pyarrow, or None when the result might differ from the Python Inferrer's.
    Malformed lines (what parse_line rejects) are found line by line only when the file is not
    plainly one JSON object per line; pyarrow then reads the other lines."""
    if not data:
        return None
    buf, starts, ends = _line_bounds(data)
    good = ends != starts
    s, e = starts[good], ends[good]
    numbers = np.flatnonzero(good) + 1
    # Every non-blank line `{...}` exactly: then no value spans lines, and with as many rows as
    # lines, each line is one JSON object (what parse_line accepts).
    if _valid_utf8(data) and np.all(buf[s] == 123) and np.all(buf[e - 1] == 125):
        result = _arrow_lines(data, lambda: [data[a:b] for a, b in zip(s.tolist(), e.tolist())], numbers)
        if result is not None:
            return result
    from lake_assets.core.records import Malformed, parse_line

    kept, kept_numbers, malformed = [], [], []
    for number, raw in zip(numbers.tolist(), (data[a:b] for a, b in zip(s.tolist(), e.tolist()))):
        if not raw.strip():
            continue  # blank
        try:
            parse_line(raw)
        except Malformed:
            malformed.append(number)
            continue
        kept.append(raw)
        kept_numbers.append(number)
    if len(kept) == len(numbers) or len(malformed) > MAX_TRACKED_MALFORMED:
        return None  # nothing to leave out: what stopped pyarrow was something else
    result = _arrow_lines(b"\n".join(kept), lambda: kept, np.array(kept_numbers, np.int64)) if kept else None
    if result is not None:
        result["malformed"] = malformed
    return result


_DIGIT_MAP = bytes(57 if 48 <= b <= 57 else 32 for b in range(256))  # digits -> "9", any other byte -> " "
_RUN = b"9" * 19
_STEP = 1 << 15


def _long_integer(data: bytes) -> bool:
    """LONG_INTEGER.search(data), first ruled out (the usual case) by finding no 19 digits in a
    row: a translate and a substring search run at memory speed, the regex at ~20 MB/s. In
    overlapping pieces: a copy of the whole file would be fresh memory the kernel zeroes first."""
    view = memoryview(data)
    for start in range(0, len(data), _STEP):
        if _RUN in view[start:start + _STEP + len(_RUN) - 1].tobytes().translate(_DIGIT_MAP):
            return LONG_INTEGER.search(data) is not None
    return False


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")  # orjson rejects invalid UTF-8; arrow does not check it
        return True
    except UnicodeDecodeError:
        return False


def _arrow_lines(data: bytes, get_lines, numbers, quick: bool = True) -> dict | None:
    """arrow_scan of `data`, whose non-blank lines (get_lines()) are JSON objects numbered
    `numbers`. A file whose fields conflict in type is split by the conflicting field's JSON type
    (pyarrow names the field) and each part parsed alone: the part holding the first value wins,
    the other parts' lines are the conflict lines, as for the Inferrer (first seen wins). `quick`
    reads each line's JSON type off the key's text where that is exact, instead of parsing it."""
    if not len(numbers):
        return None
    table, error = _arrow_try(data)
    lines: list[bytes] = []
    guessed: list[str] | None = [] if quick else None  # field names whose split was read off the text
    if table is not None:
        parts = _part(data, table, numbers, frozenset())
    else:
        lines = get_lines()
        parts = _split(lines, numbers, error, frozenset(), 0, guessed)
    if parts is None:
        return _arrow_lines(data, get_lines, numbers, quick=False) if guessed else None
    parts.sort(key=lambda p: p[1][0])
    if parts[0][3]:
        return None
    merged = _merge_parts(parts)
    if merged is None:
        return None
    kind, conflicting = merged
    if len(parts) > 1:
        paths = _key_paths(kind)
        # The key's text names the field only if no other field has that name.
        if guessed and any(sum(p.steps[-1] == name for p in paths) != 1 for name in guessed):
            return _arrow_lines(data, get_lines, numbers, quick=False)
        # Field order is first appearance; parts merged one after another keep it when the first
        # record already names every field, else a parse of the whole file with the conflicting
        # values blanked gives it (else the Python way decides the order).
        if not paths <= _key_paths(orjson.loads(lines[0]), value=True):
            split = set().union(*(p[3] for p in parts))
            kind = _in_file_order(kind, lines, numbers, parts, split) if set(guessed or ()) >= {
                path.steps[-1] for path in split} else None
            if kind is None:
                return None
    conflict_lines = sorted(np.concatenate(conflicting).tolist()) if conflicting else []
    # For lake_typed: each part's table and line numbers, and the lost parts' lines (walked when
    # their rows do not fit the table; the first part's rows make the file's schema).
    pieces = [(parts[0][0], parts[0][1], None)]
    for table, part_numbers, _, _ in parts[1:]:
        pieces.append((table, part_numbers, [lines[i] for i in np.searchsorted(numbers, part_numbers).tolist()]))
    return {"records": len(numbers), "malformed": [], "schema": kind_type(kind), "conflicts": len(conflict_lines),
            "conflict_lines": conflict_lines, "engine": "arrow", "parsed": pieces}


def _merge_parts(parts: list):
    """(the parts' kinds merged in line order, the line numbers of the parts that conflict), or
    None for a conflict (or a STRING taking another type) that no split explains: its first value
    may lie elsewhere. (A part a STRING field takes, or an empty one, does not conflict.)"""
    kind, conflicting = parts[0][2], []
    for _, part_numbers, part_kind, allowed in parts[1:]:
        conflicts: list[FieldPath] = []
        absorbed: list[FieldPath] = []
        kind = merge_kinds(kind, part_kind, FieldPath(), conflicts, absorbed)
        if not set(conflicts) <= allowed or not set(absorbed) <= allowed:
            return None
        if conflicts:
            conflicting.append(part_numbers)
    return kind, conflicting


MAX_SPLITS = 4

_CHANGED = re.compile(r"Column\((/.*)\) changed from \w+ to \w+")


def _part(data: bytes, table, numbers, allowed: frozenset) -> list | None:
    """[(table, line numbers, kind, conflict paths allowed)] for lines pyarrow read in one go."""
    if table.num_rows != len(numbers):
        return None
    kind = arrow_kind(pa.struct(list(table.schema)), 0)
    doubles = [leaf for column in table.columns for leaf in _double_leaves(column)]
    if kind is NOT_INFERRED or _not_finite(doubles):
        return None  # pyarrow (RapidJSON) reads NaN and Infinity; orjson rejects them (malformed)
    if _past_exact_integers(doubles) and _long_integer(data):
        return None  # an integer of 19 digits or more read as a double (past 64 bits, or among doubles)
    as_text = pa.schema([pa.field(f.name, _strings_for_timestamps(f.type)) for f in table.schema])
    if as_text != table.schema:  # the timestamps' text is the value: read off the lines, else parsed again
        table = _timestamp_text(data, table, kind, as_text) or arrow_read(data, as_text)
        if table is None or table.num_rows != len(numbers):
            return None
    return [(table, numbers, kind, allowed)]


def _timestamp_text(data: bytes, table, kind, as_text: pa.Schema):
    """`table` with the timestamps pyarrow inferred from strings as those strings, each read off
    its line by the key's text (RE2) instead of a second parse of `data`: exact where the field
    is outside arrays and no other field has its name (then `"name":` in a line is that field's
    key; a name holding a quote or backslash could fake one). None where that does not hold, or
    where a value read off the text does not give pyarrow's timestamp back (escapes, ...)."""
    import pyarrow.compute as pc

    names = [path.steps[-1] for path in _key_paths(kind)]
    if any('"' in name or "\\" in name for name in names):
        return None
    paths = _timestamp_paths(table.schema)
    if paths is None or any(names.count(path[-1]) != 1 for path in paths):
        return None
    buf, starts, ends = _line_bounds(data)
    starts = starts[ends != starts]  # each row: from its line's start to the next row's (the rest is blank)
    if len(starts) != table.num_rows:
        return None
    offsets = pa.array(np.append(starts, len(data)), pa.int64())
    lines = pa.LargeStringArray.from_buffers(len(starts), offsets.buffers()[1], pa.py_buffer(data))
    for path in paths:
        top = table.column_names.index(path[0])
        arr = column = _array(table.column(top))
        for step in path[1:]:
            arr = arr.field(step)
        key = '"' + re.escape(path[-1]) + r'"\s*:\s*"(?P<v>[^"\\]*)"'
        text = pc.extract_regex(lines, key).flatten()[0].cast(pa.string())  # (null where no match)
        if not _same_instants(text, arr):
            return None
        try:  # (set_column, not a new table: that validates pyarrow's own columns, some of which fail)
            table = table.set_column(top, path[0], text if len(path) == 1 else _replaced(column, path[1:], text))
        except pa.ArrowInvalid:  # a struct holding such a column
            return None
    return table if table.schema == as_text else None


def _timestamp_paths(schema: pa.Schema) -> list[tuple] | None:
    """The name paths of the timestamp fields, or None when one lies inside an array."""
    out: list[tuple] = []

    def walk(t, path: tuple) -> bool:
        if pa.types.is_timestamp(t):
            out.append(path)
        elif pa.types.is_struct(t):
            return all(walk(f.type, path + (f.name,)) for f in t)
        elif pa.types.is_list(t):
            return _strings_for_timestamps(t) == t
        return True
    return out if all(walk(f.type, (f.name,)) for f in schema) else None


def _same_instants(text: pa.Array, timestamps: pa.Array) -> bool:
    """Whether the strings read as `timestamps` (null where they are null): all without a zone,
    or all with one (pyarrow's JSON reader keeps a zoned string's instant in UTC)."""
    for zone in (None, "UTC"):
        try:
            if pa.compute.cast(text, pa.timestamp(timestamps.type.unit, zone)).cast(timestamps.type).equals(timestamps):
                return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return False


def _array(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _replaced(arr, steps: tuple, child):
    """A struct array with the field at `steps` below it replaced by `child`."""
    fields, children = [], []
    for i in range(arr.type.num_fields):
        field, value = arr.type.field(i), arr.field(i)
        if field.name == steps[0]:
            value = child if len(steps) == 1 else _replaced(value, steps[1:], child)
            field = pa.field(field.name, value.type)
        fields.append(field)
        children.append(value)
    return pa.StructArray.from_arrays(children, fields=fields, mask=arr.is_null())


def _double_leaves(arr):
    """The double arrays at every depth of a column."""
    t = arr.type
    for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
        if pa.types.is_struct(t):
            for i in range(t.num_fields):
                yield from _double_leaves(chunk.field(i))
        elif pa.types.is_list(t):
            yield from _double_leaves(chunk.values)
        elif pa.types.is_floating(t):
            yield chunk


def _not_finite(doubles: list) -> bool:
    import pyarrow.compute as pc

    return any(pc.any(pc.invert(pc.is_finite(d))).as_py() for d in doubles)


def _past_exact_integers(doubles: list) -> bool:
    """Whether a double is 2**53 or more in size: only there can pyarrow have read an integer of 19
    digits or more inexactly (an int64 column holds any it fits exactly; one past 64 bits, or among
    doubles, makes the column double), so only then is the text searched for one (_long_integer)."""
    import pyarrow.compute as pc

    return any((pc.max(pc.abs(d)).as_py() or 0) >= 2.0**53 for d in doubles)


def _split(lines: list[bytes], numbers, error: str | None, allowed: frozenset, depth: int,
           guessed: list | None) -> list | None:
    """Parts of lines that pyarrow could not read together, split by the JSON type of the field its
    error names; lines without a value there join the part of the first type seen."""
    found = _CHANGED.search(error or "")
    if found is None or depth >= MAX_SPLITS:
        return None
    path = FieldPath.from_arrow(found.group(1))
    classes = None
    if guessed is not None and not path.in_array:
        classes = types_by_key_text(lines, path.leaf)
        if classes is not None:
            guessed.append(path.leaf)
    if classes is None:
        try:
            classes = [_json_types_at(orjson.loads(raw), path.steps) for raw in lines]
        except orjson.JSONDecodeError:
            return None
    ids: dict = {}  # each JSON type set, numbered in order of first appearance (-1: no value)
    codes = np.fromiter((ids.setdefault(c, len(ids)) if c else -1 for c in classes), np.int64, len(classes))
    order = list(ids)
    if len(order) < 2 or any(len(c) > 1 for c in order):
        return None  # no split, or a record holding several types there: the Python way
    parts = []
    for i in range(len(order)):
        index = np.flatnonzero((codes == i) | (codes < 0)) if i == 0 else np.flatnonzero(codes == i)
        picked = [lines[j] for j in index.tolist()]
        body = b"\n".join(picked)
        keep = allowed if i == 0 else allowed | {path}
        table, error = _arrow_try(body)
        if table is not None:
            got = _part(body, table, numbers[index], keep)
        else:
            got = _split(picked, numbers[index], error, keep, depth + 1, guessed)
        if got is None:
            return None
        parts += got
    return parts


_TEXT_TYPES = {'"': "string", "-": "number", "t": "boolean", "f": "boolean", "{": "object", "[": "array",
               **{str(d): "number" for d in range(10)}}


def types_by_key_text(lines: list[bytes], name: str) -> list | None:
    """Each line's JSON type of the value after the key `"name":`, read off the text (RE2, no
    parse). Exact when no other field has that name, which arrow_scan checks afterwards; None
    when a line holds the key twice."""
    import pyarrow.compute as pc

    text = pa.array(lines, pa.binary()).cast(pa.string())  # (valid UTF-8: arrow_scan checked)
    key = '"' + re.escape(name) + r'"\s*:\s*'
    # one pass: the first character of the key's value, and the key again later in the line
    found = pc.extract_regex(text, key + "(?P<c>.)(?P<again>.*" + key + ")?")
    if pc.max(pc.utf8_length(found.field("again"))).as_py():
        return None
    first = found.field("c").dictionary_encode()
    chars = first.dictionary.to_pylist()
    if "{" in chars or "[" in chars:
        return None  # an empty object or array is no value (typerules.is_empty): the text does not say
    kinds = np.empty(len(chars) + 1, dtype=object)  # the last one: lines without the key
    kinds[:] = [frozenset([_TEXT_TYPES[c]]) if c in _TEXT_TYPES else frozenset() for c in chars] + [frozenset()]
    return kinds[first.indices.fill_null(len(chars)).to_numpy(zero_copy_only=False)].tolist()


def _json_types_at(value, steps: tuple) -> frozenset:
    """The JSON types ("number", "string", ...) found at the steps of a FieldPath (ELEMENT: array
    elements); none for null and empty values ([], {}: typerules.is_empty)."""
    if value is None or (not steps and is_empty(value)):
        return frozenset()
    if not steps:
        if isinstance(value, bool):
            return frozenset(["boolean"])
        if isinstance(value, (int, float)):
            return frozenset(["number"])
        return frozenset([{str: "string", dict: "object", list: "array"}[type(value)]])
    head, rest = steps[0], steps[1:]
    if head is ELEMENT:
        return frozenset().union(*(_json_types_at(v, rest) for v in value)) if isinstance(value, list) \
            else frozenset()
    return _json_types_at(value.get(head), rest) if isinstance(value, dict) else frozenset()


def _in_file_order(kind, lines: list[bytes], numbers, parts: list, split: set):
    """`kind` with its fields in the order they first appear in the file: pyarrow's order when it
    reads all lines, the lost parts' conflicting values (fields named once, outside arrays:
    types_by_key_text found them) made null; None when that does not parse."""
    names = "|".join(re.escape(path.leaf) for path in split)
    value = re.compile(rb'("(?:' + names.encode() + rb')"\s*:\s*)(?:"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false)')
    blanked = list(lines)
    for part in parts[1:]:
        for i in np.searchsorted(numbers, part[1]).tolist():
            blanked[i] = value.sub(rb"\1null", blanked[i])
    table = arrow_read(b"\n".join(blanked))
    if table is None or table.num_rows != len(lines):
        return None
    try:
        return _reordered(kind, arrow_kind(pa.struct(list(table.schema)), 0))
    except ValueError:
        return None


def _reordered(kind, order):
    """`kind` with the field order of `order`, which has the same fields (else ValueError)."""
    if isinstance(kind, dict):
        if not isinstance(order, dict) or set(kind) != set(order):
            raise ValueError("different fields")
        return {k: _reordered(kind[k], order[k]) for k in order}
    if isinstance(kind, list):
        if not isinstance(order, list):
            raise ValueError("different fields")
        return [_reordered(kind[0], order[0])]
    return kind


def _key_paths(tree, path: FieldPath = FieldPath(), value: bool = False) -> set[FieldPath]:
    """The field paths of a kind, or (value=True) of a parsed JSON value."""
    out: set[FieldPath] = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.add(path.child(k))
            out |= _key_paths(v, path.child(k), value)
    elif isinstance(tree, list):
        for item in (tree if value else tree[:1]):
            out |= _key_paths(item, path.child(ELEMENT), value)
    return out


NOT_INFERRED = object()

MAX_DEPTH = MAX_NESTING  # deeper files go the Python way, where such records are quarantined


def arrow_kind(t, depth: int):
    """An arrow type as an Inferrer kind (see schema.Inferrer), or NOT_INFERRED."""
    if depth > MAX_DEPTH:
        return NOT_INFERRED
    if pa.types.is_null(t):
        return None
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int64(t):
        return "bigint"
    if pa.types.is_float64(t):
        return "double"
    if pa.types.is_string(t) or pa.types.is_timestamp(t):  # timestamps were inferred from strings
        return "string"
    if pa.types.is_struct(t):
        out = {}
        for i in range(t.num_fields):
            field = t.field(i)
            if field.name in out:
                return NOT_INFERRED
            k = arrow_kind(field.type, depth + 1)
            if k is NOT_INFERRED:
                return NOT_INFERRED
            out[field.name] = k
        return out
    if pa.types.is_list(t):
        k = arrow_kind(t.value_type, depth + 1)
        return NOT_INFERRED if k is NOT_INFERRED else [k]
    return NOT_INFERRED


def ts_shapes(table) -> dict:
    """{FieldPath: shape} for the string fields whose every value has one of TS_SHAPES (and is a
    real calendar date); ELEMENT for array elements (`a.b[].c`)."""
    out = {}
    for name, column in zip(table.column_names, table.columns):
        _ts_walk(column, FieldPath((name,)), out)
    return out


def _ts_walk(arr, path: FieldPath, out: dict) -> None:
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_struct(t):
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        for i in range(t.num_fields):
            name = t.field(i).name
            _ts_walk(pa.chunked_array([c.flatten()[i] for c in chunks], t.field(i).type), path.child(name), out)
    elif pa.types.is_list(t):
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        _ts_walk(pa.chunked_array([c.flatten() for c in chunks], t.value_type), path.child(ELEMENT), out)
    elif pa.types.is_string(t):
        first = next((v for v in arr.slice(0, 64).to_pylist() if v is not None), None)
        for shape, pattern in TS_SHAPES.items():
            if first is not None and not re.match(pattern, first):
                continue
            if arr.null_count == len(arr):
                break
            if pc.all(pc.match_substring_regex(arr, pattern)).as_py() is not True:
                continue
            import datetime as dt

            days = pc.unique(pc.utf8_slice_codeunits(arr, 0, 10)).to_pylist()
            try:
                for day in days:
                    if day is not None:
                        dt.date.fromisoformat(day)
            except ValueError:
                continue
            out[path] = shape
            break
