"""Reading landing files inside Spark, as PySpark Python data sources (they run where Spark runs
its Python: in-process for the embedded engine, on executors on a cluster).

`lake_scan` reads and parses each file once — with pyarrow's JSON reader where the result provably
equals the Python Inferrer's, else line by line in Python — and returns one row per file: its
inferred schema, record count, malformed lines and type conflicts. `lake_typed` then returns the
bronze rows in the table's types, with the file URI and line number (which the engine's own JSON
reader cannot give): from the scan's pyarrow tables where they fit the table (kept in memory
between the two passes by the embedded engine, parsed again elsewhere), else by walking each
line through the Fitter. `lake_malformed` returns the malformed lines, for the quarantine.

The engine's own from_json is not used: it rounds some doubles differently from their text."""

from __future__ import annotations

import json
import re

import numpy as np
import orjson
import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

SCAN_SCHEMA = ("uri string, etag string, records bigint, malformed string, schema string, "
               "conflicts bigint, error string, detail string")
MALFORMED_SCHEMA = "_source_file string, _line bigint, _raw string, _error string, _landing_date string"
MAX_TRACKED_MALFORMED = 1000

# Timestamp strings in one exact shape that pyarrow's cast reads to the same instant as
# records.fit_atomic does: a hinted TIMESTAMP field holding only such strings goes typed.
# shape -> RE2 pattern over the whole value
TS_SHAPES = {
    "iso_ms_z": r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                r"\.[0-9]{3}Z$",
}


class _ParseCache:
    """What the scan parsed (_arrow_scan's `parsed`), by (uri, etag), so the typed pass need not read
    or parse a file again.
    Process-local: the embedded engine runs both passes in this process; elsewhere (executors of
    a cluster) a miss parses the file again, with the same result. Bounded by LAKE_PARSE_CACHE_MB."""

    def __init__(self):
        import threading
        from collections import OrderedDict

        self.items: OrderedDict = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def put(self, key, parsed: tuple) -> None:
        import os

        limit = int(os.environ.get("LAKE_PARSE_CACHE_MB", "2048")) << 20
        nbytes = sum(table.nbytes + sum(map(len, raw or [])) for table, _, raw in parsed)
        with self.lock:
            self._drop(key)
            if nbytes > limit:
                return
            while self.items and self.size + nbytes > limit:
                self._drop(next(iter(self.items)))
            self.items[key] = (parsed, nbytes)
            self.size += nbytes

    def pop(self, key) -> tuple | None:
        with self.lock:
            item = self.items.get(key)
            self._drop(key)
            return item[0] if item else None

    def _drop(self, key) -> None:
        item = self.items.pop(key, None)
        if item:
            self.size -= item[1]


_PARSED = _ParseCache()


class _Files(InputPartition):
    def __init__(self, files: list):
        self.files = files


def _partitions(files: list, max_partitions: int | None = None) -> list[_Files]:
    """Spread files over a few partitions, largest first, to balance the work. As many as the
    machine planning the read has cores: the embedded engine runs every partition at once on its
    own thread, and more threads than cores only contend for the GIL."""
    import os

    max_partitions = max_partitions or max(2, os.cpu_count() or 2)
    groups: list[list] = [[] for _ in range(min(len(files), max_partitions))]
    sizes = [0] * len(groups)
    for f in sorted(files, key=lambda f: -f.get("size", 0)):
        i = sizes.index(min(sizes))
        groups[i].append(f)
        sizes[i] += f.get("size", 0)
    return [_Files(sorted(g, key=lambda f: f["uri"])) for g in groups if g]


class _Reader(DataSourceReader):
    def __init__(self, options: dict):
        self.files = json.loads(options["files"])
        self.options = options

    def partitions(self):
        return _partitions(self.files) or [_Files([])]


class _ScanReader(_Reader):
    def read(self, partition: _Files):
        from lake_assets.storage import StorageError, read_data

        for f in partition.files:
            try:
                data = read_data(f["uri"], f.get("etag"))
            except StorageError as exc:
                yield (f["uri"], f.get("etag"), 0, "[]", None, 0, str(exc), None)
                continue
            r = scan_bytes(data)
            parsed = r.pop("parsed", None)
            if parsed and self.options.get("keep_parsed") == "true":
                _PARSED.put((f["uri"], f.get("etag")), parsed)
            tracked = r["malformed"] if len(r["malformed"]) <= MAX_TRACKED_MALFORMED else None
            detail = {"engine": r["engine"]}
            yield (f["uri"], f.get("etag"), r["records"], json.dumps(tracked), r["schema"].json(),
                   r["conflicts"], None, json.dumps(detail))


def scan_bytes(data: bytes, *, use_arrow: bool = True) -> dict:
    """Infer one file's records: {records, malformed (line numbers), schema, conflicts,
    conflict_lines, engine, and for engine "arrow" `parsed`: what lake_typed needs}. pyarrow's
    JSON reader does it when it can prove the result equals the Python Inferrer's; anything
    unusual falls back to Python."""
    if use_arrow:
        result = _arrow_scan(data)
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


def _arrow_read(data: bytes, schema: pa.Schema | None = None, unexpected: str = "infer"):
    table, _ = _arrow_try(data, schema, unexpected)
    return table


def _arrow_try(data: bytes, schema: pa.Schema | None = None, unexpected: str = "infer"):
    """(pyarrow's table of NDJSON `data`, None), or (None, why it cannot read it). `schema` types
    the fields it names; `unexpected` ("infer" / "error") says what happens to the others."""
    import pyarrow.json as pj

    if len(data) + 1 >= 2**31:
        return None, "too large"
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected) if schema else None
    try:
        return pj.read_json(pa.BufferReader(data), parse_options=parse,
                            read_options=pj.ReadOptions(block_size=max(len(data) + 1, 1 << 16),
                                                        use_threads=False)), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowIndexError,
            OverflowError) as exc:
        return None, str(exc)


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


def _arrow_scan(data: bytes) -> dict | None:
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


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")  # orjson rejects invalid UTF-8; arrow does not check it
        return True
    except UnicodeDecodeError:
        return False


def _arrow_lines(data: bytes, get_lines, numbers, quick: bool = True) -> dict | None:
    """_arrow_scan of `data`, whose non-blank lines (get_lines()) are JSON objects numbered
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
    kind = parts[0][2]
    for _, _, part_kind, allowed in parts[1:]:
        conflicts: list[str] = []
        kind = _merge_kinds(kind, part_kind, "", conflicts)
        if not set(conflicts) <= allowed or bool(conflicts) != bool(allowed):
            return None  # a conflict no split explains: its first value may lie elsewhere
    if len(parts) > 1:
        paths = _key_paths(kind)
        # The key's text names the field only if no other field has that name.
        if guessed and any(sum(p.rsplit("/", 1)[-1] == name for p in paths) != 1 for name in guessed):
            return _arrow_lines(data, get_lines, numbers, quick=False)
        # Field order is first appearance; parts merged one after another keep it when the first
        # record already names every field, else a parse of the whole file with the conflicting
        # values blanked gives it (else the Python way decides the order).
        if not paths <= _key_paths(orjson.loads(lines[0]), value=True):
            split = set().union(*(p[3] for p in parts))
            kind = _in_file_order(kind, lines, numbers, parts, split) if set(guessed or ()) >= {
                path.rsplit("/", 1)[-1] for path in split} else None
            if kind is None:
                return None
    from lake_assets.core.schema import Inferrer

    inferrer = Inferrer()
    inferrer.kind = kind
    conflict_lines = sorted(np.concatenate([p[1] for p in parts[1:]]).tolist()) if len(parts) > 1 else []
    # For lake_typed: each part's table and line numbers, and the lost parts' lines (walked when
    # their rows do not fit the table; the first part's rows make the file's schema).
    pieces = [(parts[0][0], parts[0][1], None)]
    for table, part_numbers, _, _ in parts[1:]:
        pieces.append((table, part_numbers, [lines[i] for i in np.searchsorted(numbers, part_numbers).tolist()]))
    return {"records": len(numbers), "malformed": [], "schema": inferrer.result(), "conflicts": len(conflict_lines),
            "conflict_lines": conflict_lines, "engine": "arrow", "parsed": pieces}


MAX_SPLITS = 4
_CHANGED = re.compile(r"Column\((/.*)\) changed from \w+ to \w+")


def _part(data: bytes, table, numbers, allowed: frozenset) -> list | None:
    """[(table, line numbers, kind, conflict paths allowed)] for lines pyarrow read in one go."""
    if table.num_rows != len(numbers):
        return None
    kind = _arrow_kind(pa.struct(list(table.schema)), 0)
    if kind is _NO or any(_not_finite(column) for column in table.columns):
        return None  # pyarrow (RapidJSON) reads NaN and Infinity; orjson rejects them (malformed)
    as_text = pa.schema([pa.field(f.name, _strings_for_timestamps(f.type)) for f in table.schema])
    if as_text != table.schema:
        table = _arrow_read(data, as_text)
        if table is None or table.num_rows != len(numbers):
            return None
    return [(table, numbers, kind, allowed)]


def _not_finite(arr) -> bool:
    """Whether any double below `arr` (a column) is NaN or infinite."""
    import pyarrow.compute as pc

    t = arr.type
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    if pa.types.is_struct(t):
        return any(_not_finite(c.field(i)) for c in chunks for i in range(t.num_fields))
    if pa.types.is_list(t):
        return any(_not_finite(c.values) for c in chunks)
    if pa.types.is_floating(t):
        return any(pc.any(pc.invert(pc.is_finite(c))).as_py() for c in chunks)
    return False


def _split(lines: list[bytes], numbers, error: str | None, allowed: frozenset, depth: int,
           guessed: list | None) -> list | None:
    """Parts of lines that pyarrow could not read together, split by the JSON type of the field its
    error names; lines without a value there join the part of the first type seen."""
    found = _CHANGED.search(error or "")
    if found is None or depth >= MAX_SPLITS:
        return None
    path = found.group(1)
    steps = path.split("/")[1:]
    classes = None
    if guessed is not None and "[]" not in steps:
        classes = _types_by_key_text(lines, steps[-1])
        if classes is not None:
            guessed.append(steps[-1])
    if classes is None:
        try:
            classes = [_json_types_at(orjson.loads(raw), steps) for raw in lines]
        except orjson.JSONDecodeError:
            return None
    order = list(dict.fromkeys(c for c in classes if c))
    if len(order) < 2 or any(len(c) > 1 for c in order):
        return None  # no split, or a record holding several types there: the Python way
    parts = []
    for i, cls in enumerate(order):
        index = np.array([j for j, c in enumerate(classes) if c == cls or (not c and i == 0)], np.int64)
        body = b"\n".join(lines[j] for j in index)
        keep = allowed if i == 0 else allowed | {path}
        table, error = _arrow_try(body)
        if table is not None:
            got = _part(body, table, numbers[index], keep)
        else:
            got = _split([lines[j] for j in index], numbers[index], error, keep, depth + 1, guessed)
        if got is None:
            return None
        parts += got
    return parts


_TEXT_TYPES = {'"': "string", "-": "number", "t": "boolean", "f": "boolean", "{": "object", "[": "array",
               **{str(d): "number" for d in range(10)}}


def _types_by_key_text(lines: list[bytes], name: str) -> list | None:
    """Each line's JSON type of the value after the key `"name":`, read off the text (RE2, no
    parse). Exact when no other field has that name, which _arrow_scan checks afterwards; None
    when a line holds the key twice."""
    import pyarrow.compute as pc

    text = pa.array(lines, pa.binary()).cast(pa.string())  # (valid UTF-8: _arrow_scan checked)
    key = '"' + re.escape(name) + r'"\s*:\s*'
    if pc.max(pc.count_substring_regex(text, key)).as_py() > 1:
        return None
    first = pc.extract_regex(text, key + "(?P<c>.)").field("c").to_pylist()
    return [frozenset([_TEXT_TYPES[c]]) if c in _TEXT_TYPES else frozenset() for c in first]


def _drop_field(arr, steps: list[str]):
    """A struct array without the field at `steps` below it."""
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


def _json_types_at(value, steps: list[str]) -> frozenset:
    """The JSON types ("number", "string", ...) found at a pyarrow column path ("[]": array elements)."""
    if value is None:
        return frozenset()
    if not steps:
        if isinstance(value, bool):
            return frozenset(["boolean"])
        if isinstance(value, (int, float)):
            return frozenset(["number"])
        return frozenset([{str: "string", dict: "object", list: "array"}[type(value)]])
    head, rest = steps[0], steps[1:]
    if head == "[]":
        return frozenset().union(*(_json_types_at(v, rest) for v in value)) if isinstance(value, list) \
            else frozenset()
    return _json_types_at(value.get(head), rest) if isinstance(value, dict) else frozenset()


def _in_file_order(kind, lines: list[bytes], numbers, parts: list, split: set):
    """`kind` with its fields in the order they first appear in the file: pyarrow's order when it
    reads all lines, the lost parts' conflicting values (fields named once, outside arrays:
    _types_by_key_text found them) made null; None when that does not parse."""
    names = "|".join(re.escape(path.rsplit("/", 1)[-1]) for path in split)
    value = re.compile(rb'("(?:' + names.encode() + rb')"\s*:\s*)(?:"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false)')
    blanked = list(lines)
    for part in parts[1:]:
        for i in np.searchsorted(numbers, part[1]).tolist():
            blanked[i] = value.sub(rb"\1null", blanked[i])
    table = _arrow_read(b"\n".join(blanked))
    if table is None or table.num_rows != len(lines):
        return None
    try:
        return _reordered(kind, _arrow_kind(pa.struct(list(table.schema)), 0))
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


def _key_paths(tree, path: str = "", value: bool = False) -> set[str]:
    """The field paths of an Inferrer kind, or (value=True) of a parsed JSON value."""
    out: set[str] = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.add(f"{path}/{k}")
            out |= _key_paths(v, f"{path}/{k}", value)
    elif isinstance(tree, list):
        for item in (tree if value else tree[:1]):
            out |= _key_paths(item, path + "/[]", value)
    return out


def _merge_kinds(a, b, path: str, conflicts: list):
    """Inferrer kinds merged as Inferrer._merge merges values (`a` first); conflict paths appended
    in pyarrow's notation."""
    if b is None:
        return a
    if a is None:
        return b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge_kinds(out.get(k), v, f"{path}/{k}", conflicts)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return [_merge_kinds(a[0], b[0], path + "/[]", conflicts)]
    if a == b:
        return a
    if isinstance(a, str) and isinstance(b, str) and {a, b} == {"bigint", "double"}:
        return "double"
    conflicts.append(path)
    return a


_NO = object()
MAX_DEPTH = 200  # orjson rejects nesting past 1024; deeper than this goes the Python way


def _arrow_kind(t, depth: int):
    """An arrow type as an Inferrer kind (see schema.Inferrer), or _NO."""
    if depth > MAX_DEPTH:
        return _NO
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
                return _NO
            k = _arrow_kind(field.type, depth + 1)
            if k is _NO:
                return _NO
            out[field.name] = k
        return out
    if pa.types.is_list(t):
        k = _arrow_kind(t.value_type, depth + 1)
        return _NO if k is _NO else [k]
    return _NO


def _ts_shapes(table) -> dict:
    """{field path: shape} for the string fields whose every value has one of TS_SHAPES (and is a
    real calendar date). Paths: names joined by "." with "[]" for array elements ("a.b[].c")."""
    out = {}
    for name, column in zip(table.column_names, table.columns):
        _ts_walk(column, name, out)
    return out


def _ts_walk(arr, path: str, out: dict) -> None:
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_struct(t):
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        for i in range(t.num_fields):
            name = t.field(i).name
            _ts_walk(pa.chunked_array([c.flatten()[i] for c in chunks], t.field(i).type), f"{path}.{name}", out)
    elif pa.types.is_list(t):
        chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
        _ts_walk(pa.chunked_array([c.flatten() for c in chunks], t.value_type), path + "[]", out)
    elif pa.types.is_string(t):
        first = next((v for v in arr.slice(0, 64).to_pylist() if v is not None), None)
        import re

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


class _MalformedReader(_Reader):
    """The lines of each file that parse_line rejects, with the reason: only the lines the scan
    listed (`malformed`), or every line when it listed too many to keep (None)."""

    def read(self, partition: _Files):
        from lake_assets.core.records import Malformed, parse_line
        from lake_assets.storage import StorageError, read_data

        rows = []
        for f in partition.files:
            try:  # the etag pins the version the scan saw; a file changed since gives no rows
                lines = read_data(f["uri"], f.get("etag")).split(b"\n")
            except StorageError:
                continue
            numbers = f["malformed"] if f.get("malformed") is not None else range(1, len(lines) + 1)
            for number in numbers:
                raw = lines[number - 1]
                if not raw.strip():
                    continue
                try:
                    parse_line(raw)
                except Malformed as exc:
                    rows.append((f["uri"], number, raw.decode("utf-8", "replace"), str(exc), f["day"]))
        yield from rows


class _TypedReader(_Reader):
    """Bronze rows in the table's types (option `schema`, as declared_schema gives it), with the
    rescued data, `_source_file`, `_line` and `_landing_date`. A `typed` file comes from what the
    scan parsed with pyarrow: each part conformed to the columns, with the fields that can never
    fit (a string where the table has BIGINT, an unknown field ...) moved to the rescued column as
    they are, or else walked. Any other file, or one whose values turn out not to convert (an INT
    overflow, an invalid DATE), is walked line by line through the Fitter (option `target`), whose
    output pyarrow reads back in the declared types — never the engine's from_json, which rounds
    some doubles differently from the text."""

    def read(self, partition: _Files):
        from pyspark.sql import types as T
        from pyspark.sql.pandas.types import to_arrow_schema

        from lake_assets.core.records import Fitter
        from lake_assets.storage import StorageError, read_data

        self.declared = to_arrow_schema(T.StructType.fromJson(json.loads(self.options["schema"])))
        self.out = pa.schema(list(self.declared) + [pa.field(name, t) for name, t in _typed_extra(self.options)])
        self.schemas = [T.StructType.fromJson(json.loads(self.options[k])) for k in ("target", "table")]
        self.rescue_unknown = self.options.get("rescue_unknown", "true") == "true"
        self.fitter = Fitter(self.schemas[0], rescue_unknown=self.rescue_unknown)
        self.timestamps = '"timestamp"' in self.options["table"]
        for f in partition.files:
            try:
                batches = None
                if f.get("typed"):
                    pieces = _PARSED.pop((f["uri"], f.get("etag")))
                    if pieces is None:  # parsed by another process, or evicted: parse again
                        scanned = _arrow_scan(read_data(f["uri"], f.get("etag")))
                        pieces = scanned["parsed"] if scanned else None
                    try:
                        batches = [self._piece(table, numbers, raw, f) for table, numbers, raw in pieces or []] or None
                    except _DoesNotConvert:
                        batches = None
                if batches is None:
                    data = read_data(f["uri"], f.get("etag"))
                    walk = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
                    batches = [_walked_batch(self.out, self.declared, self.fitter, walk, f)]
            except StorageError:
                continue  # changed or deleted since the scan: bronze finds the file short
            # whole batches: Sail panics importing a slice of nested columns (and commits what it had)
            yield from (b for b in batches if b.num_rows)

    def _piece(self, table, numbers, raw, f: dict) -> pa.RecordBatch:
        """One part of a typed file: conformed, its misfit fields rescued; or walked."""
        from lake_assets.core.records import rescued_json
        from lake_assets.core.schema import Inferrer

        inferrer = Inferrer()
        inferrer.kind = _arrow_kind(pa.struct(list(table.schema)), 0)
        seen = inferrer.result()
        ts = _ts_shapes(table) if self.timestamps else {}
        misfits: dict = {}
        for schema in self.schemas:
            _misfits(schema, seen, ts, [], misfits)
        moved = _moved_fields(table, misfits, self.rescue_unknown)
        if moved is None:
            if raw is None:
                raise _DoesNotConvert()
            return _walked_batch(self.out, self.declared, self.fitter, list(zip(numbers.tolist(), raw)), f)
        table, values = moved
        rows: list[dict] = [{} for _ in range(table.num_rows)]
        for steps, column in values:
            if self.rescue_unknown or misfits[steps] is not None:  # unknown fields: rescued, or ignored (none)
                for row, value in zip(rows, column.to_pylist()):
                    if value is not None:
                        row[".".join(steps)] = value
        rescued = pa.array([rescued_json(row, f["uri"]) for row in rows], pa.string()) if values \
            else pa.nulls(table.num_rows, pa.string())
        return _typed_batch(self.out, self.declared, table, numbers, rescued, f)


class _DoesNotConvert(Exception):
    """A value of a pyarrow column does not convert to its column's type as the Fitter would."""


def _misfits(target, seen, ts: dict, steps: list, out: dict) -> None:
    """Into `out`, {field steps: target type (None: not in `target`)} for the fields of `seen`
    that typed_fits does not approve for `target`."""
    from pyspark.sql import types as T

    if isinstance(seen, T.NullType):
        return
    if isinstance(target, T.StructType) and isinstance(seen, T.StructType):
        fields = {f.name: f.dataType for f in target.fields}
        for f in seen.fields:
            if isinstance(f.dataType, T.NullType):
                continue
            if f.name not in fields:
                out[tuple(steps + [f.name])] = None
            else:
                _misfits(fields[f.name], f.dataType, ts, steps + [f.name], out)
        return
    if isinstance(target, T.ArrayType) and isinstance(seen, T.ArrayType):
        _misfits(target.elementType, seen.elementType, ts, steps + ["[]"], out)
        return
    if not typed_fits(target, seen, ts, ".".join(steps).replace(".[]", "[]")):
        out[tuple(steps)] = target


def _moved_fields(table, misfits: dict, rescue_unknown: bool):
    """(table without the misfit fields, [(steps, their values)]) when each misfit is a field
    outside arrays that the Fitter would rescue whatever its value — an unknown field, or a type
    that never fits its column — holding strings, booleans or integers, so the values move to the
    rescued column as they are (or an unknown field of any type mode `none` ignores); else None."""
    values = []
    for steps, target in misfits.items():
        column = None if "[]" in steps else _column_at(table, list(steps))
        ignored = target is None and not rescue_unknown
        if column is None or not ignored and not (
                (pa.types.is_string(column.type) or pa.types.is_boolean(column.type) or pa.types.is_int64(column.type))
                and _never_fits(target, column.type)):
            return None
        values.append((steps, column))
    for steps, _ in values:
        top = _array(table.column(steps[0]))
        table = table.drop_columns([steps[0]])
        if len(steps) > 1:
            table = table.append_column(steps[0], _drop_field(top, list(steps[1:])))
    return table, values


def _array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array, without copying the usual single chunk (combine_chunks copies)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _column_at(table, steps: list[str]):
    """The values at a field path, null wherever a parent is null; None if there is no such field."""
    if steps[0] not in table.column_names:
        return None
    column = _array(table.column(steps[0]))
    for name in steps[1:]:
        if not pa.types.is_struct(column.type) or column.type.get_field_index(name) < 0:
            return None
        column = column.flatten()[column.type.get_field_index(name)]
    return column


def _never_fits(target, arrow_type) -> bool:
    """Whether records.fit_atomic rejects every value of this pyarrow type (string, boolean or
    int64) for `target` (None: an unknown field, rescued or ignored whatever its value)."""
    from pyspark.sql import types as T

    if target is None:
        return True
    if pa.types.is_boolean(arrow_type):
        return not isinstance(target, T.BooleanType)
    if pa.types.is_string(arrow_type):
        return not isinstance(target, (T.StringType, T.DateType, T.TimestampType))
    return isinstance(target, (T.StringType, T.BooleanType, T.DateType, T.TimestampType, T.StructType,
                               T.ArrayType, T.MapType))


def _typed_batch(out: pa.Schema, declared: pa.Schema, table, numbers, rescued: pa.Array, f: dict) -> pa.RecordBatch:
    n = table.num_rows
    columns = [_conform(_array(table.column(field.name)), field.type)
               if field.name in table.column_names else pa.nulls(n, field.type) for field in declared]
    repeat = pa.array(np.zeros(n, np.int64))
    columns += [rescued, pa.array([f["uri"]]).take(repeat), pa.array(numbers, pa.int64()),
                pa.array([f["day"]]).take(repeat)]
    return pa.RecordBatch.from_arrays(columns, schema=out)


def _walked_batch(out: pa.Schema, declared: pa.Schema, fitter, walk: list, f: dict) -> pa.RecordBatch:
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
        table = _arrow_read(b"\n".join(orjson.dumps(r) for r in records), schema, "error") if records \
            else pa.table([pa.nulls(0, field.type) for field in schema], schema=schema)
        if table is None:
            raise RuntimeError(f"{f['uri']}: pyarrow cannot read the Fitter's records back")
    else:
        row = pa.struct(list(declared))
        table = pa.Table.from_batches([pa.RecordBatch.from_struct_array(
            pa.array([arrow_value(r, row) for r in records], row))], schema=declared)
    return _typed_batch(out, declared, table, np.array(numbers, np.int64), pa.array(rescued, pa.string()), f)


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


def _typed_extra(options: dict) -> list[tuple[str, pa.DataType]]:
    """lake_typed's columns after the data: all reserved names, so no data column can clash."""
    return [(options["rescued_column"], pa.string()), ("_source_file", pa.string()), ("_line", pa.int64()),
            ("_landing_date", pa.string())]


def walk_schema(declared: pa.Schema) -> pa.Schema | None:
    """The explicit schema pyarrow reads the Fitter's records back with (DATE as its text, which
    _conform converts), or None when a declared type is one pyarrow's JSON reader cannot build
    (MAP, BINARY, ...)."""
    def text(t):
        if pa.types.is_struct(t):
            fields = [pa.field(f.name, text(f.type)) for f in t]
            return None if any(f.type is None for f in fields) else pa.struct(fields)
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


def _conform(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """An arrow array of an inferred type as `target`, which typed_fits approved, with the values
    the Fitter would write; _DoesNotConvert when some value would be rescued instead."""
    import pyarrow.compute as pc

    if arr.type == target:
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), target)
    if pa.types.is_struct(target):
        names = {arr.type.field(i).name for i in range(arr.type.num_fields)}
        children = [_conform(arr.field(f.name), f.type) if f.name in names else pa.nulls(len(arr), f.type)
                    for f in target]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=arr.is_null())
    if pa.types.is_list(target):
        return pa.ListArray.from_arrays(arr.offsets, _conform(arr.values, target.value_type), type=target,
                                        mask=arr.is_null())
    if pa.types.is_timestamp(target):  # strings of one TS_SHAPES shape (the scan checked every value)
        return pc.cast(arr, pa.timestamp("us", "UTC")).cast(target)
    try:
        if pa.types.is_date32(target):  # YYYY-MM-DD of a real day, as records.fit_atomic wants
            if pc.all(pc.match_substring_regex(arr, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")).as_py() is False \
                    or pc.any(pc.starts_with(arr, "0000")).as_py():
                raise _DoesNotConvert()
            return pc.cast(arr, target)
        if pa.types.is_float32(target) and (pc.max(pc.abs(arr)).as_py() or 0) > 3.4028234e38:
            raise _DoesNotConvert()
        # bigint -> double past 2**53 and -> float: the nearest, as the Fitter writes them;
        # bigint -> int / smallint / tinyint: checked (an overflow is rescued, not wrapped)
        return pc.cast(arr, target, safe=not pa.types.is_floating(target))
    except pa.ArrowInvalid:
        raise _DoesNotConvert() from None


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


def typed_fits(target, seen, ts: dict, path: str = "") -> bool:
    """True when _conform can turn arrow's parse of `seen` values into `target` as the Fitter
    would write them: the same type, bigint into double, structs and arrays of such, strings of
    one TS_SHAPES shape (`ts`: {path: shape}) into TIMESTAMP; or, checked value by value when
    converted, bigint into INT / SMALLINT / TINYINT / FLOAT, double into FLOAT, strings into DATE."""
    from pyspark.sql import types as T

    if isinstance(seen, T.NullType):
        return True
    if isinstance(target, T.StructType) and isinstance(seen, T.StructType):
        fields = {f.name: f.dataType for f in target.fields}
        return all(f.name in fields and typed_fits(fields[f.name], f.dataType, ts, f"{path}.{f.name}" if path else f.name)
                   for f in seen.fields if not isinstance(f.dataType, T.NullType))
    if isinstance(target, T.ArrayType) and isinstance(seen, T.ArrayType):
        return typed_fits(target.elementType, seen.elementType, ts, path + "[]")
    if isinstance(target, T.TimestampType):
        return isinstance(seen, T.StringType) and ts.get(path) == "iso_ms_z"
    if isinstance(target, (T.ByteType, T.ShortType, T.IntegerType)):
        return isinstance(seen, T.LongType)
    if isinstance(target, T.FloatType):
        return isinstance(seen, (T.LongType, T.DoubleType))
    if isinstance(target, T.DateType):
        return isinstance(seen, T.StringType)
    simple = (T.StringType, T.LongType, T.DoubleType, T.BooleanType)
    return isinstance(target, simple) and (target == seen or (isinstance(seen, T.LongType)
                                                              and isinstance(target, T.DoubleType)))


class ScanSource(DataSource):
    @classmethod
    def name(cls):
        return "lake_scan"

    def schema(self):
        return SCAN_SCHEMA

    def reader(self, schema):
        return _ScanReader(self.options)


class MalformedSource(DataSource):
    @classmethod
    def name(cls):
        return "lake_malformed"

    def schema(self):
        return MALFORMED_SCHEMA

    def reader(self, schema):
        return _MalformedReader(self.options)


class TypedSource(DataSource):
    @classmethod
    def name(cls):
        return "lake_typed"

    def schema(self):
        from pyspark.sql import types as T

        declared = T.StructType.fromJson(json.loads(self.options["schema"]))
        extra = {pa.string(): T.StringType(), pa.int64(): T.LongType()}
        return T.StructType(declared.fields + [T.StructField(name, extra[t]) for name, t in _typed_extra(self.options)])

    def reader(self, schema):
        return _TypedReader(self.options)


def scan(spark, files: list[dict], keep_parsed: bool = False) -> dict[str, object]:
    """One row per file (see SCAN_SCHEMA), by URI. `keep_parsed`: keep what pyarrow parsed for
    lake_typed (only where both run in this process: the embedded engine); release() forgets it."""
    return {r["uri"]: r for r in spark.read.format("lake_scan").option("files", json.dumps(files))
            .option("keep_parsed", "true" if keep_parsed else "false").load().collect()}


def release(files: list[dict]) -> None:
    """Forget what the scan kept of these files (those lake_typed did not take)."""
    for f in files:
        _PARSED.pop((f["uri"], f.get("etag")))


def plan_reads(files: list[dict], scans: dict) -> None:
    """Mark each file with its malformed lines (None: more than the scan tracked) and `typed`:
    whether lake_typed starts from what pyarrow parsed in the scan (it walks the lines that do
    not fit the table), or walks every line."""
    for f in files:
        scan = scans[f["uri"]]
        f["malformed"] = json.loads(scan["malformed"]) if scan["malformed"] else None
        f["typed"] = json.loads(scan["detail"] or "{}").get("engine") == "arrow"


def good_rows(spark, files: list[dict], target, data_schema, rescued_column: str, *, rescue_unknown: bool,
              audit: list):
    """The files' records as bronze rows: data columns of `data_schema`, the rescued column,
    `_source_file`, `_line`, the `audit` columns, `_landing_date`."""
    from pyspark.sql import functions as F

    declared = declared_schema(data_schema)
    return (spark.read.format("lake_typed").option("files", json.dumps(files)).option("schema", declared.json())
            .option("target", target.json()).option("table", data_schema.json())
            .option("rescue_unknown", "true" if rescue_unknown else "false")
            .option("rescued_column", rescued_column).load()
            .select(*[F.col(f.name).cast(f.dataType).alias(f.name) if f.dataType != d.dataType else F.col(f.name)
                      for f, d in zip(data_schema.fields, declared.fields)],
                    rescued_column, "_source_file", "_line", *audit, "_landing_date"))


def malformed_rows(spark, files: list[dict], audit: list):
    """The files' malformed lines as quarantine rows."""
    return (spark.read.format("lake_malformed").option("files", json.dumps(files)).load()
            .select("_source_file", "_line", "_raw", "_error", *audit, "_landing_date"))


def register_sources(spark) -> None:
    spark.dataSource.register(ScanSource)
    spark.dataSource.register(MalformedSource)
    spark.dataSource.register(TypedSource)
