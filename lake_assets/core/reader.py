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
               "conflicts bigint, error string")
LINES_SCHEMA = ("_source_file string, _line bigint, value string, rescued string, corrupt string, reason string, "
                "_landing_date string")
MAX_TRACKED_MALFORMED = 1000
BATCH_ROWS = 20_000


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
        from lake_assets.core.records import Malformed, parse_line
        from lake_assets.core.schema import Inferrer
        from lake_assets.storage import StorageError, read_text_lines

        for f in partition.files:
            try:
                lines = read_text_lines(f["uri"], f.get("etag"))
            except StorageError as exc:
                yield (f["uri"], f.get("etag"), 0, "[]", None, 0, str(exc))
                continue
            inferrer, malformed, records = Inferrer(), [], 0
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    inferrer.absorb(parse_line(raw))
                    records += 1
                except Malformed:
                    malformed.append(number)
            tracked = malformed if len(malformed) <= MAX_TRACKED_MALFORMED else None
            yield (f["uri"], f.get("etag"), records, json.dumps(tracked), inferrer.result().json(),
                   inferrer.conflicts, None)


class _LinesReader(_Reader):
    def read(self, partition: _Files):
        from pyspark.sql import types as T

        from lake_assets.core.records import Fitter, Malformed, parse_line, rescued_json
        from lake_assets.storage import read_text_lines

        fitter = Fitter(T.StructType.fromJson(json.loads(self.options["schema"])),
                        rescue_unknown=self.options.get("rescue_unknown", "true") == "true")
        columns: dict[str, list] = {f.name: [] for f in _ARROW}

        def emit(uri, number, value, rescued, corrupt, reason):
            for name, v in zip(columns, (uri, number, value, rescued, corrupt, reason, day)):
                columns[name].append(v)

        for f in partition.files:
            uri, day = f["uri"], f["day"]
            malformed = set(f["malformed"]) if f.get("malformed") is not None else None
            walk = f.get("walk", True) or malformed is None
            # The etag pins the version the scan saw; a change in between fails the file.
            for number, raw in enumerate(read_text_lines(uri, f.get("etag")), 1):
                if not raw.strip():
                    continue
                if not walk and number not in malformed:
                    emit(uri, number, raw.decode("utf-8", "replace"), None, None, None)
                    continue
                try:
                    record = parse_line(raw)
                except Malformed as exc:
                    emit(uri, number, None, None, raw.decode("utf-8", "replace"), str(exc))
                    continue
                clean, rescued, _ = fitter.fit(record)
                emit(uri, number, orjson.dumps(clean).decode(), rescued_json(rescued, uri), None, None)
                if len(columns["_line"]) >= BATCH_ROWS:
                    yield _batch(columns)
            if len(columns["_line"]) >= BATCH_ROWS:
                yield _batch(columns)
        if columns["_line"]:
            yield _batch(columns)


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
    """Mark each file with its malformed lines and whether its records need the per-record walk:
    only if something in it may not fit the target schema as is."""
    from pyspark.sql import types as T

    from lake_assets.core.schema import subsumes

    for f in files:
        scan = scans[f["uri"]]
        f["malformed"] = json.loads(scan["malformed"]) if scan["malformed"] else None
        f["walk"] = bool(scan["conflicts"]) or not subsumes(target, T.StructType.fromJson(json.loads(scan["schema"])))


def _lines(spark, files: list[dict], target, rescue_unknown: bool = True):
    return (spark.read.format("lake_lines").option("files", json.dumps(files)).option("schema", target.json())
            .option("rescue_unknown", "true" if rescue_unknown else "false").load())


def good_rows(spark, files: list[dict], target, data_schema, rescued_column: str, *, rescue_unknown: bool,
              audit: list):
    """The files' records as bronze rows: data columns of `data_schema`, the rescued column,
    `_source_file`, `_line`, the `audit` columns, `_landing_date`."""
    from pyspark.sql import functions as F

    from lake_assets.core.records import TIMESTAMP_FORMAT

    return (_lines(spark, files, target, rescue_unknown).where("corrupt IS NULL")
            .select(F.from_json("value", data_schema, {"timestampFormat": TIMESTAMP_FORMAT}).alias("r"),
                    F.col("rescued").alias(rescued_column), "_source_file", "_line", "_landing_date")
            .select("r.*", rescued_column, "_source_file", "_line", *audit, "_landing_date"))


def malformed_rows(spark, files: list[dict], target, audit: list):
    """The files' malformed lines as quarantine rows."""
    from pyspark.sql import functions as F

    return (_lines(spark, files, target).where("corrupt IS NOT NULL")
            .select("_source_file", "_line", F.col("corrupt").alias("_raw"), F.col("reason").alias("_error"),
                    *audit, "_landing_date"))


def register_sources(spark) -> None:
    spark.dataSource.register(ScanSource)
    spark.dataSource.register(LinesSource)
