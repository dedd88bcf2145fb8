"""Reading landing files inside Spark, as PySpark Python data sources (they run where Spark runs
its Python: in-process for the embedded engine, on executors on a cluster).

`lake_scan` reads each file once and returns one row per file: its inferred schema, record and
malformed counts, and whether its type conflicts. `lake_lines` reads the files again and returns
one row per line — the JSON to parse (rewritten only where something had to be rescued), the
rescued JSON, or the raw text of a malformed line — with the file URI and line number, which the
engine's own JSON reader cannot give."""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

SCAN_SCHEMA = ("uri string, etag string, records bigint, malformed string, schema string, "
               "conflicts bigint, error string, detail string")
LINES_SCHEMA = ("_source_file string, _line bigint, value string, rescued string, corrupt string, reason string, "
                "_landing_date string")
MAX_TRACKED_MALFORMED = 1000
MAX_TRACKED_CONFLICTS = 100_000   # lines with a type conflict, walked alone (the rest passes through)
BATCH_ROWS = 20_000

# Timestamp strings in one exact shape that the engine's from_json parses with a known format to the
# same instant as records.fit_atomic (+ TIMESTAMP_FORMAT) would: files whose hinted TIMESTAMP fields
# hold only such strings pass through unwalked and are parsed with that format instead.
# shape -> (RE2 pattern over the whole value, from_json timestampFormat)
TS_SHAPES = {
    "iso_ms_z": (r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                 r"\.[0-9]{3}Z$", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"),
}


class _Files(InputPartition):
    def __init__(self, files: list):
        self.files = files


def _partitions(files: list, max_partitions: int = 16) -> list[_Files]:
    """Spread files over a few partitions, largest first, to balance the work."""
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
            tracked = r["malformed"] if len(r["malformed"]) <= MAX_TRACKED_MALFORMED else None
            detail = {"conflict_lines": r["conflict_lines"], "ts": r["ts"], "engine": r["engine"]}
            yield (f["uri"], f.get("etag"), r["records"], json.dumps(tracked), r["schema"].json(),
                   r["conflicts"], None, json.dumps(detail))


def scan_bytes(data: bytes, *, use_arrow: bool = True) -> dict:
    """Infer one file's records: {records, malformed (line numbers), schema, conflicts,
    conflict_lines (or None), ts ({path: shape}), engine}. pyarrow's JSON reader does it when it
    can prove the result equals the Python Inferrer's; anything unusual falls back to Python."""
    if use_arrow:
        result = _arrow_scan(data)
        if result is not None:
            return result
    return _python_scan(data)


def _python_scan(data: bytes) -> dict:
    from lake_assets.core.records import Malformed, parse_line
    from lake_assets.core.schema import Inferrer

    lines = data.split(b"\n")
    inferrer, malformed, records, conflict_lines, clean = Inferrer(), [], 0, [], []
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
        else:
            clean.append(number)
    ts = {}
    if len(conflict_lines) <= MAX_TRACKED_CONFLICTS:
        # Timestamp shapes over the records that may pass through (those without a conflict).
        ts = _ts_of_lines(b"\n".join(lines[n - 1] for n in clean), len(clean))
    return {"records": records, "malformed": malformed, "schema": inferrer.result(), "conflicts": inferrer.conflicts,
            "conflict_lines": conflict_lines if len(conflict_lines) <= MAX_TRACKED_CONFLICTS else None,
            "ts": ts, "engine": "python"}


def _ts_of_lines(body: bytes, rows: int) -> dict:
    """Timestamp shapes of the string fields of lines already known to be valid JSON objects."""
    if not rows:
        return {}
    table = _arrow_read(body)
    if table is None or table.num_rows != rows:
        return {}
    return _ts_shapes(table)


def _arrow_read(data: bytes):
    import pyarrow.json as pj

    if len(data) + 1 >= 2**31:
        return None
    try:
        return pj.read_json(pa.BufferReader(data),
                            read_options=pj.ReadOptions(block_size=max(len(data) + 1, 1 << 16), use_threads=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowIndexError, OverflowError):
        return None


def _line_bounds(data: bytes):
    """(start, end) byte offsets of each line of data.split(b"\n"), end excluding a trailing \r."""
    import numpy as np

    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(buf)])).astype(np.int64)
    if len(buf):
        last = np.clip(ends - 1, 0, len(buf) - 1)
        ends = ends - ((ends > starts) & (buf[last] == 13))
    return buf, starts, ends


def _arrow_scan(data: bytes) -> dict | None:
    import numpy as np

    if not data or b"NaN" in data or b"Inf" in data:  # RapidJSON accepts NaN/Infinity; orjson does not
        return None
    try:
        data.decode("utf-8")  # orjson rejects invalid UTF-8; arrow does not check it
    except UnicodeDecodeError:
        return None
    buf, starts, ends = _line_bounds(data)
    blank = ends == starts
    good = ~blank
    s, e = starts[good], ends[good]
    # Every non-blank line must be `{...}` exactly: then no value spans lines, and with as many rows
    # as lines, each line is one JSON object (what parse_line accepts).
    if not (np.all(buf[s] == 123) and np.all(buf[e - 1] == 125)):
        return None
    table = _arrow_read(data)
    if table is None or table.num_rows != int(good.sum()):
        return None
    kind = _arrow_kind(pa.struct(list(table.schema)), 0)
    if kind is _NO:
        return None
    from lake_assets.core.schema import Inferrer

    inferrer = Inferrer()
    inferrer.kind = kind
    return {"records": table.num_rows, "malformed": [], "schema": inferrer.result(), "conflicts": 0,
            "conflict_lines": [], "ts": _ts_shapes(table), "engine": "arrow"}


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

        for shape, (pattern, _) in TS_SHAPES.items():
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


class _LinesReader(_Reader):
    """Per file (see plan_walks): `walk` True walks every record through the Fitter, False passes
    every good line through as is, a list of line numbers walks those lines only. Option `emit`:
    "all" lines, "pass" (only lines passed through), "walked" (walked and malformed lines),
    "malformed" (malformed lines only)."""

    def read(self, partition: _Files):
        from pyspark.sql import types as T

        from lake_assets.core.records import Fitter, Malformed, parse_line, rescued_json
        from lake_assets.storage import StorageError, read_data

        emit_mode = self.options.get("emit", "all")
        fitter = Fitter(T.StructType.fromJson(json.loads(self.options["schema"])),
                        rescue_unknown=self.options.get("rescue_unknown", "true") == "true")
        columns: dict[str, list] = {f.name: [] for f in _ARROW}

        def emit(uri, number, value, rescued, corrupt, reason):
            for name, v in zip(columns, (uri, number, value, rescued, corrupt, reason, day)):
                columns[name].append(v)

        for f in partition.files:
            uri, day = f["uri"], f["day"]
            mode = f.get("emit", emit_mode)
            malformed = set(f["malformed"]) if f.get("malformed") is not None else None
            walk = f.get("walk", True) if malformed is not None else True
            if walk is True and mode == "pass":
                continue
            # The etag pins the version the scan saw. A file changed or deleted since gives no
            # rows at all; bronze then finds it short and records it as failed.
            try:
                data = read_data(uri, f.get("etag"))
            except StorageError:
                continue
            if walk is True and not (mode == "malformed" and malformed is not None):
                todo = enumerate(data.split(b"\n"), 1)
            else:
                walk_lines = set(walk) if isinstance(walk, list) else set()
                if mode in ("all", "pass"):
                    yield from _passthrough(data, uri, day, malformed | walk_lines)
                    if mode == "pass":
                        continue
                wanted = malformed | walk_lines if mode in ("all", "walked") else malformed
                lines = data.split(b"\n") if wanted else []
                todo = ((n, lines[n - 1]) for n in sorted(wanted))
            for number, raw in todo:
                if not raw.strip():
                    continue
                try:
                    record = parse_line(raw)
                except Malformed as exc:
                    emit(uri, number, None, None, raw.decode("utf-8", "replace"), str(exc))
                    continue
                if mode == "malformed":
                    continue
                clean, rescued, _ = fitter.fit(record)
                emit(uri, number, orjson.dumps(clean).decode(), rescued_json(rescued, uri), None, None)
                if len(columns["_line"]) >= BATCH_ROWS:
                    yield _batch(columns)
            if len(columns["_line"]) >= BATCH_ROWS:
                yield _batch(columns)
        if columns["_line"]:
            yield _batch(columns)


def _passthrough(data: bytes, uri: str, day: str, skip: set):
    """The file's non-blank lines, except the line numbers in `skip`, as they are (vectorised)."""
    import numpy as np
    import pyarrow.compute as pc

    if not data:
        return
    lines = pc.split_pattern(pa.array([data], pa.large_binary()), b"\n").flatten()
    _, starts, ends = _line_bounds(data)
    buf = np.frombuffer(data, np.uint8)
    keep = ends > starts
    # a whitespace-only line is blank too (the Python loop skips `not raw.strip()`)
    first = buf[np.clip(starts, 0, len(buf) - 1)]
    for i in np.flatnonzero(keep & np.isin(first, np.frombuffer(b" \t\r\x0b\x0c", np.uint8))):
        if not data[starts[i]:ends[i]].strip():
            keep[i] = False
    if skip:
        idx = np.fromiter((n - 1 for n in skip if 0 < n <= len(keep)), np.int64)
        keep[idx] = False
    index = np.flatnonzero(keep)
    for lo in range(0, len(index), BATCH_ROWS):
        part = index[lo:lo + BATCH_ROWS]
        n = len(part)
        values = lines.take(pa.array(part)).cast(pa.large_string()).cast(pa.string())
        yield pa.RecordBatch.from_arrays(
            [pa.array([uri], pa.string()).take(pa.array(np.zeros(n, np.int64))), pa.array(part + 1, pa.int64()),
             values, pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), pa.nulls(n, pa.string()),
             pa.array([day], pa.string()).take(pa.array(np.zeros(n, np.int64)))], schema=_ARROW)


_ARROW = pa.schema([("_source_file", pa.string()), ("_line", pa.int64()), ("value", pa.string()),
                    ("rescued", pa.string()), ("corrupt", pa.string()), ("reason", pa.string()),
                    ("_landing_date", pa.string())])


def _batch(columns: dict[str, list]) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_arrays([pa.array(columns[f.name], f.type) for f in _ARROW], schema=_ARROW)
    for values in columns.values():
        values.clear()
    return batch


class ScanSource(DataSource):
    @classmethod
    def name(cls):
        return "lake_scan"

    def schema(self):
        return SCAN_SCHEMA

    def reader(self, schema):
        return _ScanReader(self.options)


class LinesSource(DataSource):
    @classmethod
    def name(cls):
        return "lake_lines"

    def schema(self):
        return LINES_SCHEMA

    def reader(self, schema):
        return _LinesReader(self.options)


def scan(spark, files: list[dict]) -> dict[str, object]:
    """One row per file (see SCAN_SCHEMA), by URI."""
    return {r["uri"]: r for r in spark.read.format("lake_scan").option("files", json.dumps(files)).load().collect()}


def plan_walks(files: list[dict], scans: dict, target) -> None:
    """Mark each file with its malformed lines, what its records need (`walk`: True to walk every
    record through the Fitter, False to pass every good line through as is, or the list of line
    numbers to walk — the records with a type conflict inside the file) and `ts_format`, the
    from_json timestampFormat its passed-through lines need (None: TIMESTAMP_FORMAT, the Fitter's).

    A record passes through only if its type fits the target as is (`subsumes`), where a TIMESTAMP
    field counts as fitting a string field whose every value has one exact shape (TS_SHAPES) that
    from_json reads to the same instant."""
    from pyspark.sql import types as T

    from lake_assets.core.schema import subsumes

    for f in files:
        scan = scans[f["uri"]]
        f["malformed"] = json.loads(scan["malformed"]) if scan["malformed"] else None
        detail = json.loads(scan["detail"]) if scan["detail"] else {}
        seen = T.StructType.fromJson(json.loads(scan["schema"]))
        used: set = set()
        relaxed = _relax(target, detail.get("ts") or {}, "", used)
        f["ts_format"] = None
        f["walk"] = True
        if len(used) > 1 or not subsumes(relaxed, seen):
            continue
        if used and subsumes(target, seen):  # (cannot happen: a TIMESTAMP field is never inferred)
            used = set()
        if scan["conflicts"]:
            lines = detail.get("conflict_lines")
            if lines is None:
                continue
            f["walk"] = lines
        else:
            f["walk"] = False
        f["ts_format"] = TS_SHAPES[next(iter(used))][1] if used else None


def _relax(t, ts: dict, path: str, used: set):
    """`t` with each TIMESTAMP field that the file holds as strings of a TS_SHAPES shape typed STRING."""
    from pyspark.sql import types as T

    if isinstance(t, T.StructType):
        return T.StructType([T.StructField(f.name, _relax(f.dataType, ts, f"{path}.{f.name}" if path else f.name, used),
                                           f.nullable, f.metadata) for f in t.fields])
    if isinstance(t, T.ArrayType):
        return T.ArrayType(_relax(t.elementType, ts, path + "[]", used), t.containsNull)
    if isinstance(t, T.TimestampType) and path in ts:
        used.add(ts[path])
        return T.StringType()
    return t


def _lines(spark, files: list[dict], target, rescue_unknown: bool = True, emit: str = "all"):
    return (spark.read.format("lake_lines").option("files", json.dumps(files)).option("schema", target.json())
            .option("rescue_unknown", "true" if rescue_unknown else "false").option("emit", emit).load())


def good_rows(spark, files: list[dict], target, data_schema, rescued_column: str, *, rescue_unknown: bool,
              audit: list):
    """The files' records as bronze rows: data columns of `data_schema`, the rescued column,
    `_source_file`, `_line`, the `audit` columns, `_landing_date`."""
    from pyspark.sql import functions as F

    from lake_assets.core.records import TIMESTAMP_FORMAT

    # One read per from_json timestamp format, so walked lines (canonical timestamps) and lines
    # passed through with timestamps of another exact shape never meet in one from_json.
    shaped = [f for f in files if f.get("ts_format")]
    reads = [([f for f in files if not f.get("ts_format")]
              + [{**f, "emit": "walked"} for f in shaped if f["walk"] is not False], "all", TIMESTAMP_FORMAT)]
    for fmt in sorted({f["ts_format"] for f in shaped}):
        reads.append(([f for f in shaped if f["ts_format"] == fmt], "pass", fmt))
    out = None
    for group, emit, fmt in reads:
        if not group and out is not None:
            continue
        df = (_lines(spark, group, target, rescue_unknown, emit).where("corrupt IS NULL")
              .select(F.from_json("value", data_schema, {"timestampFormat": fmt}).alias("r"),
                      F.col("rescued").alias(rescued_column), "_source_file", "_line", "_landing_date")
              .select("r.*", rescued_column, "_source_file", "_line", *audit, "_landing_date"))
        out = df if out is None else out.unionByName(df)
    return out


def malformed_rows(spark, files: list[dict], target, audit: list):
    """The files' malformed lines as quarantine rows."""
    from pyspark.sql import functions as F

    return (_lines(spark, files, target, emit="malformed").where("corrupt IS NOT NULL")
            .select("_source_file", "_line", F.col("corrupt").alias("_raw"), F.col("reason").alias("_error"),
                    *audit, "_landing_date"))


def register_sources(spark) -> None:
    spark.dataSource.register(ScanSource)
    spark.dataSource.register(LinesSource)
