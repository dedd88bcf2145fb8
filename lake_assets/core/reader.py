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
from dataclasses import asdict, dataclass, field

import pyarrow as pa
from pyspark.sql import types as T
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from lake_assets.core import framing, pyarrow_scan, typed_rows
from lake_assets.core.framing import Framing
from lake_assets.core.layout import ERROR, LANDING_DATE, LINE, RAW, RECORD, SOURCE_FILE

# What the data sources yield: rows and strings, as a Python data source must (on every engine).
SCAN_SCHEMA = ("uri string, etag string, records bigint, malformed string, schema string, error string, engine string, "
               "lost string, split boolean")
MALFORMED_SCHEMA = (f"{SOURCE_FILE} string, {LINE} bigint, {RECORD} bigint, {RAW} string, {ERROR} string, "
                    f"{LANDING_DATE} string")


@dataclass(frozen=True)
class FileTask:
    """One landing file a batch reads: the version its etag names, how its bytes are framed, where
    to read them. The data sources take it as a dict (`as_data`), in the read's JSON options."""
    uri: str
    etag: str
    size: int
    day: str                                      # its landing date
    framing: Framing
    salvage: bool = False                         # on_corrupt salvage: keep what a damaged gzip gives
    partition_values: dict[str, str] = field(default_factory=dict)   # its key's `name=value` folders
    read_uri: str | None = None                   # an archived copy to read instead (reprocess --from-archive)

    def as_data(self) -> dict:
        return {**asdict(self), "framing": self.framing.as_dict()}

    def read_with(self, scan: "ScanResult") -> dict:
        """The file as the rows passes take it: with what its scan found (see plan_reads)."""
        return {**self.as_data(), "malformed": scan.malformed, "typed": scan.parser == "arrow", "split": scan.split,
                "per_record": self.framing.per_record(scan.split)}


@dataclass(frozen=True)
class ScanResult:
    """What the scan found in one file (one SCAN_SCHEMA row, decoded)."""
    records: int
    malformed: list[int] | None        # the malformed lines; None: more than the scan tracks
    schema: T.StructType | None        # the records' inferred schema; None when unreadable
    parser: str | None                 # "arrow": lake_typed starts from pyarrow's parse; "python": it walks
    split: bool = False                # read as concatenated values (Firehose)
    lost: str | None = None            # on_corrupt salvage: what a damaged gzip lost
    error: str | None = None           # why the file could not be read

    @classmethod
    def of_row(cls, row) -> "ScanResult":
        return cls(row["records"], json.loads(row["malformed"]) if row["malformed"] else None,
                   T.StructType.fromJson(json.loads(row["schema"])) if row["schema"] else None,
                   row["engine"], bool(row["split"]), row["lost"], row["error"])

    @property
    def has_malformed(self) -> bool:
        return self.malformed != []


class _ParseCache:
    """What the scan parsed (pyarrow_scan's `parsed`), by (uri, etag), so the typed pass need not
    read or parse a file again. Process-local: the embedded engine runs both passes in this
    process; elsewhere (executors of a cluster) a miss parses the file again, with the same
    result. Bounded by LAKE_PARSE_CACHE_MB (MiB, default 512; the oldest files go first): a default
    batch (256 MiB of NDJSON) parses to ~0.15 GiB of tables, and a larger batch re-parses what does
    not fit rather than outgrow the 2 GiB a day's ingest is meant to stay under."""

    def __init__(self):
        import threading
        from collections import OrderedDict

        self.items: OrderedDict = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def put(self, key, parsed: tuple) -> None:
        import os

        text = os.environ.get("LAKE_PARSE_CACHE_MB", "512")
        if not text.strip().isdigit():
            raise ValueError(f"LAKE_PARSE_CACHE_MB must be a whole number of MiB (0 keeps nothing), got {text!r}")
        limit = int(text) << 20
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


# A remote engine reads one file per partition, up to this many partitions.
MAX_REMOTE_PARTITIONS = 256


def read_partitions(spark, files: list) -> int:
    """How many partitions a read of `files` gets. The embedded engine: as many as this machine
    has cores (it runs every partition at once on its own thread, and more threads than cores only
    contend for the GIL). A remote engine plans the read on its driver, whose cores say nothing
    about the cluster's: one file per partition, and the cluster spreads them."""
    import os

    from lake_assets.engine import is_embedded

    if is_embedded(spark):
        return max(2, os.cpu_count() or 2)
    return max(1, min(len(files), MAX_REMOTE_PARTITIONS))


def _partitions(files: list, max_partitions: int) -> list[_Files]:
    """Spread files over at most `max_partitions` partitions, largest first, to balance the work."""
    groups: list[list] = [[] for _ in range(min(len(files), max_partitions))]
    sizes = [0] * len(groups)
    for f in sorted(files, key=lambda f: -f.get("size", 0)):
        i = sizes.index(min(sizes))
        groups[i].append(f)
        sizes[i] += f.get("size", 0)
    return [_Files(sorted(g, key=lambda f: f["uri"])) for g in groups if g]


def _landed(f: dict) -> tuple[bytes, str | None]:
    """The file's bytes (the version its etag names; from f["read_uri"], an archived copy, when given)
    and what was lost: with on_corrupt salvage (f["salvage"]) a damaged gzip gives what decompresses
    before the damage. StorageError if gone (or damaged, without salvage)."""
    from lake_assets.storage import read_data, salvaged_data

    uri = f.get("read_uri") or f["uri"]
    return salvaged_data(uri, f.get("etag")) if f.get("salvage") else (read_data(uri, f.get("etag")), None)


def _framed(f: dict) -> framing.Framed:
    """The file's bytes (_landed) as NDJSON records, in its source's framing (f["framing"])
    and split as concatenated values when the scan found it so (f["split"]), cut when salvaged from a
    damaged gzip; StorageError if gone."""
    data, lost = _landed(f)
    return framing.frame(data, framing.Framing.of(f.get("framing")), split=bool(f.get("split")), cut=lost is not None)


class _Reader(DataSourceReader):
    def __init__(self, options: dict):
        self.files = json.loads(options["files"])
        self.options = options

    def partitions(self):
        return _partitions(self.files, int(self.options["partitions"])) or [_Files([])]


class _ScanReader(_Reader):
    def read(self, partition: _Files):
        from lake_assets.storage import StorageError

        for f in partition.files:
            try:  # salvage a damaged gzip first (on_corrupt salvage), then frame the bytes
                data, lost = _landed(f)
            except StorageError as exc:
                yield (f["uri"], f.get("etag"), 0, "[]", None, str(exc), None, None, False)
                continue
            source, cut = framing.Framing.of(f.get("framing")), lost is not None  # cut: what a damaged gzip held
            framed = framing.frame(data, source, cut=cut)
            # Concatenated values (Firehose) are tried first when the file starts like them, else
            # when its lines do not parse.
            head = data[:1 << 16]
            split = framing.concatenated(data, source, cut) \
                if not framed.per_record and (b"}{" in head or b"} {" in head) else None
            r = pyarrow_scan.scan_bytes((split or framed).data)
            if split is None and r["malformed"] and not framed.per_record:
                split = framing.concatenated(data, source, cut)
                if split is not None:
                    r = pyarrow_scan.scan_bytes(split.data)
            r["schema"] = framing.with_binary(r["schema"], (split or framed).binary)  # DynamoDB B / BS
            parsed = r.pop("parsed", None)
            if parsed and self.options.get("keep_parsed") == "true":
                _PARSED.put((f["uri"], f.get("etag")), parsed)
            if f.get("partition_values"):  # the folder values are fields of every record (if it has none of its own)
                from lake_assets.core.schema import merge_types

                r["schema"] = merge_types(r["schema"], typed_rows.partition_schema(f["partition_values"]))
            tracked = r["malformed"] if len(r["malformed"]) <= pyarrow_scan.MAX_TRACKED_MALFORMED else None
            yield (f["uri"], f.get("etag"), r["records"], json.dumps(tracked), r["schema"].json(), None, r["engine"],
                   lost, split is not None)


class _MalformedReader(_Reader):
    """The lines of each file that parse_line rejects, with the reason: only the lines the scan
    listed (`malformed`), or every line when it listed too many to keep (None)."""

    def read(self, partition: _Files):
        from lake_assets.core.records import Malformed, parse_line
        from lake_assets.storage import StorageError

        rows = []
        for f in partition.files:
            try:  # the etag pins the version the scan saw; a file changed since gives no rows
                framed = _framed(f)
            except StorageError:
                continue
            lines = framed.data.split(b"\n")
            numbers = f["malformed"] if f.get("malformed") is not None else range(1, len(lines) + 1)
            for number in numbers:
                raw = lines[number - 1]
                if not raw.strip():
                    continue
                record = number - 1 if framed.per_record else None
                if number in framed.errors:
                    rows.append((f["uri"], number, record, *framed.errors[number], f["day"]))
                    continue
                try:
                    parse_line(raw)
                except Malformed as exc:
                    rows.append((f["uri"], number, record, raw.decode("utf-8", "replace"), str(exc), f["day"]))
        yield from rows


class _TypedReader(_Reader):
    """Bronze rows in the table's types (option `schema`, as typed_rows.declared_schema gives
    it), with the rescued data, `_source_file`, `_line` and `_landing_date`. A `typed` file comes
    from what the scan parsed with pyarrow: each part conformed to the columns, with the fields
    that can never fit (a string where the table has BIGINT, an unknown field ...) moved to the
    rescued column as they are, or else walked. Any other file, or one whose values turn out not
    to convert (an INT overflow, an invalid DATE), is walked line by line through the Fitter
    (option `target`), whose output pyarrow reads back in the declared types — never the
    engine's from_json, which rounds some doubles differently from the text."""

    def read(self, partition: _Files):
        from pyspark.sql import types as T
        from pyspark.sql.pandas.types import to_arrow_schema

        from lake_assets.core.records import Fitter
        from lake_assets.storage import StorageError

        self.declared = to_arrow_schema(T.StructType.fromJson(json.loads(self.options["schema"])))
        self.out = to_arrow_schema(_typed_schema(self.options))
        self.schemas = [T.StructType.fromJson(json.loads(self.options[k])) for k in ("target", "table")]
        self.rescue_unknown = self.options.get("rescue_unknown", "true") == "true"
        self.fitter = Fitter(self.schemas[0], rescue_unknown=self.rescue_unknown)
        self.timestamps = _has_timestamp(self.schemas[1])  # else timestamp shapes need not be found
        for f in partition.files:
            try:
                batches = None
                if f.get("typed"):
                    pieces = _PARSED.pop((f["uri"], f.get("etag")))
                    if pieces is None:  # parsed by another process, or evicted: parse again
                        scanned = pyarrow_scan.arrow_scan(_framed(f).data)
                        pieces = scanned["parsed"] if scanned else None
                    try:
                        batches = [self._piece(table, numbers, raw, f) for table, numbers, raw in pieces or []] or None
                    except typed_rows.DoesNotConvert:
                        batches = None
                if batches is None:
                    data = _framed(f).data
                    walk = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
                    batches = [typed_rows.walked_batch(self.out, self.declared, self.fitter, walk, f)]
            except StorageError:
                continue  # changed or deleted since the scan: bronze finds the file short
            # whole batches: Sail panics importing a slice of nested columns (and commits what it had)
            yield from (b for b in batches if b.num_rows)

    def _piece(self, table, numbers, raw, f: dict) -> pa.RecordBatch:
        """One part of a typed file: conformed, its misfit fields rescued; or walked."""
        from lake_assets.core.fieldpath import FieldPath
        from lake_assets.core.typerules import kind_type

        seen = kind_type(pyarrow_scan.arrow_kind(pa.struct(list(table.schema)), 0))
        ts = pyarrow_scan.ts_shapes(table) if self.timestamps else {}
        misfits: dict = {}
        for schema in self.schemas:
            typed_rows.misfits(schema, seen, ts, FieldPath(), misfits)
        moved = typed_rows.moved_fields(table, misfits)
        if moved is None:
            if raw is None:
                raise typed_rows.DoesNotConvert()
            return typed_rows.walked_batch(self.out, self.declared, self.fitter, list(zip(numbers.tolist(), raw)), f)
        table, values = moved
        kept = [(path, leaves) for path, leaves in values  # unknown fields: rescued, or ignored (none)
                if self.rescue_unknown or misfits[path] is not None]
        rescued = typed_rows.rescued_column(table.num_rows, kept, f["uri"], _records_of(numbers, raw, f))
        return typed_rows.typed_batch(self.out, self.declared, table, numbers, rescued, f)


def _records_of(numbers, raw: list | None, f: dict):
    """record(row): the parsed line of a part's row (its raw lines, else the file's), each parsed once."""
    from lake_assets.core.records import parse_line

    parsed: dict = {}
    lines: list = []

    def record(row: int) -> dict:
        if row not in parsed:
            if raw is None and not lines:
                lines.extend(_framed(f).data.split(b"\n"))
            parsed[row] = parse_line(raw[row] if raw is not None else lines[int(numbers[row]) - 1])
        return parsed[row]
    return record


def _has_timestamp(t) -> bool:
    from pyspark.sql import types as T

    if isinstance(t, T.StructType):
        return any(_has_timestamp(f.dataType) for f in t.fields)
    if isinstance(t, T.ArrayType):
        return _has_timestamp(t.elementType)
    if isinstance(t, T.MapType):
        return _has_timestamp(t.valueType)
    return isinstance(t, T.TimestampType)


def _typed_schema(options: dict):
    """lake_typed's columns: the declared data columns, then the rescued column, `_source_file`,
    `_line`, `_record` and `_landing_date` (all reserved names, so no data column can clash)."""
    declared = T.StructType.fromJson(json.loads(options["schema"]))
    return T.StructType(declared.fields + [
        T.StructField(options["rescued_column"], T.StringType()), T.StructField(SOURCE_FILE, T.StringType()),
        T.StructField(LINE, T.LongType()), T.StructField(RECORD, T.LongType()),
        T.StructField(LANDING_DATE, T.StringType())])


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
        return _typed_schema(self.options)

    def reader(self, schema):
        return _TypedReader(self.options)


def _read(spark, source: str, files: list[dict]):
    return (spark.read.format(source).option("files", json.dumps(files))
            .option("partitions", str(read_partitions(spark, files))))


def scan(spark, tasks: list[FileTask], keep_parsed: bool = False) -> dict[str, ScanResult]:
    """What the scan finds in each file, by URI. `keep_parsed`: keep what pyarrow parsed for
    lake_typed (only where both run in this process: the embedded engine); release() forgets it."""
    return {r["uri"]: ScanResult.of_row(r) for r in _read(spark, "lake_scan", [t.as_data() for t in tasks])
            .option("keep_parsed", "true" if keep_parsed else "false").load().collect()}


def release(tasks: list[FileTask]) -> None:
    """Forget what the scan kept of these files (those lake_typed did not take)."""
    for t in tasks:
        _PARSED.pop((t.uri, t.etag))


def plan_reads(tasks: list[FileTask], scans: dict[str, ScanResult]) -> list[dict]:
    """The files as lake_typed and lake_malformed take them: each with its malformed lines (None:
    more than the scan tracked) and `typed`: whether lake_typed starts from what pyarrow parsed in
    the scan (it walks the lines that do not fit the table), or walks every line."""
    return [t.read_with(scans[t.uri]) for t in tasks]


def good_rows(spark, tasks: list[FileTask], scans: dict[str, ScanResult], target, data_schema, rescued_column: str,
              *, rescue_unknown: bool, audit: list):
    """The files' records as bronze rows: data columns of `data_schema`, the rescued column,
    `_source_file`, `_line`, `_record`, the `audit` columns, `_landing_date`."""
    from pyspark.sql import functions as F

    from lake_assets.core.tables import quoted

    declared = typed_rows.declared_schema(data_schema)
    return (_read(spark, "lake_typed", plan_reads(tasks, scans)).option("schema", declared.json())
            .option("target", target.json()).option("table", data_schema.json())
            .option("rescue_unknown", "true" if rescue_unknown else "false")
            .option("rescued_column", rescued_column).load()
            .select(*[F.col(quoted(f.name)).cast(f.dataType).alias(f.name) if f.dataType != d.dataType
                      else F.col(quoted(f.name)) for f, d in zip(data_schema.fields, declared.fields)],
                    rescued_column, SOURCE_FILE, LINE, RECORD, *audit, LANDING_DATE))


def malformed_rows(spark, tasks: list[FileTask], scans: dict[str, ScanResult], audit: list):
    """The files' malformed lines as quarantine rows."""
    return (_read(spark, "lake_malformed", plan_reads(tasks, scans)).load()
            .select(SOURCE_FILE, LINE, RECORD, RAW, ERROR, *audit, LANDING_DATE))


def register_sources(spark) -> None:
    spark.dataSource.register(ScanSource)
    spark.dataSource.register(MalformedSource)
    spark.dataSource.register(TypedSource)
