"""Bronze ingestion: landing files of some days -> the source's append-only Delta table.

One batch: list -> claim in the ledger -> scan (infer the whole batch) -> evolve the schema ->
read lines, fit and rescue -> write quarantine and bronze -> mark committed. Files never claimed
before are appended; files whose earlier claim died, that were overwritten, or that a backfill
reprocesses have their rows replaced in one MERGE, so a rerun after a crash at any point leaves
each file's rows exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets import storage
from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core import archive, reader, tables
from lake_assets.core.delta_meta import commits_of, table_version
from lake_assets.core.discovery import list_days
from lake_assets.core.faults import checkpoint
from lake_assets.core.layout import AUDIT_COLUMNS, BRONZE_PARTITION, ROW_KEY, Layout
from lake_assets.core.ledger import (COMMITTED, FAILED, RELEASED, SKIPPED, Entry, Ledger, LedgerUnreadable, is_stale,
                                    this_owner)
from lake_assets.core.partitions import landing_date
from lake_assets.core.schema import SchemaDiff, diff, evolve, merge_types, subsumes
from lake_assets.core.schema_log import SchemaLog
from lake_assets.core.selection import Selection, partition_values
from lake_assets.engine import is_embedded
from lake_assets.errors import LakeError, is_commit_conflict

QUARANTINE_SCHEMA = T.StructType([
    T.StructField("_source_file", T.StringType()), T.StructField("_line", T.LongType()),
    T.StructField("_record", T.LongType()), T.StructField("_raw", T.StringType()), T.StructField("_error", T.StringType()),
    T.StructField("_batch_id", T.StringType()), T.StructField("_ingested_at", T.TimestampType()),
    T.StructField("_landing_date", T.StringType()),
])


class IngestError(LakeError, RuntimeError):
    """Ingestion stopped; the message says why and what to do."""


class NewColumnsError(IngestError):
    """failOnNewColumns met fields the accepted schema lacks; nothing was written."""

    def __init__(self, source: str, fields: list[str], files: list[str]):
        self.fields, self.files = fields, files
        super().__init__(
            f"source {source!r}: {len(fields)} new field(s) not in the accepted schema "
            f"(schema_evolution_mode failOnNewColumns): {', '.join(fields)}. Nothing was written for this batch. "
            f"Run `lake schema accept {source}` to accept them; the same files then load.")

    def facts(self) -> dict:
        return {"new_fields": self.fields, "files": self.files[:50]}


@dataclass
class IngestResult:
    source: str
    days: list[str]
    batch_ids: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    records: int = 0
    malformed: int = 0
    rescued: int = 0
    ignored_fields: list[str] = field(default_factory=list)  # mode none: new fields left out
    failed: dict[str, str] = field(default_factory=dict)
    skipped_busy: int = 0
    skipped_overwritten: int = 0
    skipped_corrupt: dict[str, str] = field(default_factory=dict)   # on_corrupt: skip
    salvaged: dict[str, str] = field(default_factory=dict)          # on_corrupt: salvage -> what was lost
    skipped_unselected: int = 0   # objects of these days that are not data (include / exclude, default excludes)
    cleaned: int = 0              # committed files clean_source moved or deleted
    write_modes: set[str] = field(default_factory=set)   # append (new files) / replace (rows rewritten)
    table_version: int | None = None
    schema: T.StructType | None = None
    schema_version: int | None = None
    schema_changes: list[tuple[int, SchemaDiff]] = field(default_factory=list)
    rejected_fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned:
    file: storage.FileInfo
    day: str
    seen: Entry | None


def list_landing(lake: LakeConfig, source: SourceConfig, days: set[str] | None = None
                 ) -> list[tuple[storage.FileInfo, str]]:
    """The source's landing files with their landing dates, limited to `days` when given."""
    return listing(lake, source, days)[0]


def listing(lake: LakeConfig, source: SourceConfig, days: set[str] | None = None
            ) -> tuple[list[tuple[storage.FileInfo, str]], int, int, bool]:
    """(list_landing, objects of those days the selection skipped, data objects listed, whether the keys
    carry their dates: then only the folders of `days` are listed (discovery.list_days), and a file's
    landing date never changes, so the ledger can be read by day)."""
    selection = Selection.of(lake.landing, source)
    out, skipped, data = [], 0, 0
    files, dated = (storage.list_files(selection.prefix), False) if days is None \
        else list_days(selection.prefix, days)
    for f in files:
        day = landing_date(f.uri[len(selection.prefix):], f.last_modified).isoformat()
        selected = selection.selects(f.uri)
        data += selected
        if days is not None and day not in days:
            continue
        if not selected:
            skipped += 1
        else:
            out.append((f, day))
    return out, skipped, data, dated


def plan(listed: list[tuple[storage.FileInfo, str]], entries: dict[str, Entry], source: SourceConfig,
         reprocess: bool, now: dt.datetime) -> tuple[list[Planned], int, int]:
    """Which listed files this run should claim; also counts files busy elsewhere and ignored overwrites."""
    timeout = dt.timedelta(minutes=source.claim_timeout_minutes)
    wanted, busy, ignored = [], 0, 0
    changed = []
    for f, day in listed:
        entry = entries.get(f.uri)
        if entry is not None and entry.status == "processing" and not is_stale(entry, now, timeout):
            busy += 1
            continue
        if entry is not None and entry.etag != f.etag and entry.status == COMMITTED:
            if source.on_overwrite == "ignore":
                ignored += 1
                continue
            changed.append(f.uri)
        elif entry is not None and entry.status in (COMMITTED, SKIPPED) and entry.etag == f.etag and not reprocess:
            continue
        wanted.append(Planned(f, day, entry))
    if changed and source.on_overwrite == "fail":
        raise IngestError(f"source {source.name!r}: {len(changed)} file(s) were overwritten after ingestion "
                          f"(on_overwrite: fail): {', '.join(changed[:10])}. Set on_overwrite to reprocess "
                          f"or ignore, or restore the files.")
    return wanted, busy, ignored


def ingest(spark, lake: LakeConfig, source: SourceConfig, days: list[str], *, reprocess: bool = False,
           run_id: str | None = None, log: Callable[[str], None] = print,
           progress: Callable[[int, int], None] | None = None, max_batches: int | None = None,
           from_archive: bool = False) -> IngestResult:
    """Ingest the landing files of `days` (YYYY-MM-DD) into bronze, in batches bounded by the
    source's max_files_per_run / max_bytes_per_run; `reprocess` re-reads committed files too;
    `max_batches` stops after that many batches (a sensor's bounded run; the rest waits);
    `from_archive` reads the files clean_source moved under archive_to instead (with reprocess)."""
    layout = Layout(lake.warehouse, source.name)
    result = IngestResult(source.name, sorted(days))
    storage.check_bucket(lake.landing, "landing")
    storage.check_bucket(lake.warehouse, "warehouse")

    reads: dict[str, str] = {}
    dated = False
    if from_archive:
        ledger = Ledger(spark, layout.ledger)
        listed, reads = archive.archived_listing(lake.landing, source, set(days), ledger.entries())
        data_objects = len(listed)
    else:
        listed, result.skipped_unselected, data_objects, dated = listing(lake, source, set(days))
        # Dated keys: this run reads and merges only the ledger rows of its days.
        ledger = Ledger(spark, layout.ledger, set(days) if dated else None)
    if not data_objects and not dated:  # a dated listing saw only these days' folders
        log(f"warning: {source.name}: path {source.path!r} matches no data object on any day "
            f"({Selection.of(lake.landing, source).pattern}, include {list(source.include)}, exclude "
            f"{list(source.exclude)} and the default excludes)")
    checkpoint("listed")
    now = dt.datetime.now(dt.timezone.utc)
    entries = _entries_with_lineage(spark, layout, source, ledger, listed, log)
    wanted, result.skipped_busy, result.skipped_overwritten = plan(listed, entries, source, reprocess, now)
    if not listed:
        log(f"{source.name} {_span(days)}: no files landed under {storage.join(lake.landing, source.path)} "
            f"for these days; nothing to ingest (files land by the date in their key, else their last-modified "
            f"day in UTC)")
    else:
        log(f"{source.name} {_span(days)}: {len(listed)} file(s) landed, {len(wanted)} to ingest"
            + (f", {result.skipped_busy} claimed by another run" if result.skipped_busy else "")
            + (f", {result.skipped_unselected} other object(s) skipped (not data)" if result.skipped_unselected else ""))
    done = 0
    for batch in batches(wanted, source.max_files_per_run, source.max_bytes_per_run)[:max_batches]:
        _run_batch(spark, source, layout, batch, ledger, run_id, result, log, reads)
        done += len(batch)
        if progress:
            progress(done, len(wanted))
    if result.skipped_corrupt:
        log(f"{source.name}: {len(result.skipped_corrupt)} corrupt file(s) skipped (on_corrupt: skip; ledger status "
            f"skipped): " + "; ".join(f"{uri}: {why}" for uri, why in sorted(result.skipped_corrupt.items())[:20]))
    if result.failed:
        log(f"{source.name}: {len(result.failed)} file(s) failed (ledger status failed; a rerun tries them again): "
            + "; ".join(f"{uri}: {why}" for uri, why in sorted(result.failed.items())[:20]))
    if source.clean_source != "off" and not from_archive:
        result.cleaned = archive.clean(lake.landing, source, listed, ledger.entries(), dt.datetime.now(dt.timezone.utc))
    return _with_table_facts(spark, layout, result)


def _entries_with_lineage(spark, layout: Layout, source: SourceConfig, ledger: Ledger,
                          listed: list[tuple[storage.FileInfo, str]], log) -> dict[str, Entry]:
    """The ledger's entries, first completed from bronze's lineage for listed files it does not know
    but whose rows are in bronze (a lost, restored or rebuilt ledger), so they are not loaded twice."""
    try:
        entries = ledger.entries([f.uri for f, _ in listed])
    except LedgerUnreadable as exc:
        raise IngestError(f"source {source.name!r}: {LedgerUnreadable(exc.uri, exc.cause, source.name)}") from None
    unknown = {f.uri: (f, day) for f, day in listed if f.uri not in entries}
    rebuilt = lineage_entries(spark, layout, source, unknown, sorted({day for _, day in unknown.values()})) \
        if unknown else []
    if not rebuilt:
        return entries
    ledger.rebuild(rebuilt)
    log(f"{source.name}: the ledger did not know {len(rebuilt)} file(s) whose rows are in bronze (a lost or "
        f"restored ledger); rebuilt their entries from bronze's lineage (_source_file, _batch_id, counts), so "
        f"they are not loaded again: {', '.join(e.uri for e in rebuilt[:10])}")
    return ledger.entries([f.uri for f, _ in listed])


def lineage_entries(spark, layout: Layout, source: SourceConfig, listed: dict[str, tuple[storage.FileInfo, str]],
                    days: list[str] | None = None) -> list[Entry]:
    """Ledger entries for the files whose rows bronze or its quarantine hold (of `listed` and `days`
    when given, else all): committed with that batch and its counts; a file with rows of several
    batches is released (its next load replaces them). A file gone from the landing gets etag "gone"."""
    def per_batch(table: str, *aggs) -> list:
        if tables.schema_or_none(spark, table) is None:
            return []
        rows = tables.read(spark, table)
        if days is not None:
            rows = rows.where(F.col(BRONZE_PARTITION).isin(days) & F.col("_source_file").isin(list(listed)))
        return rows.groupBy("_source_file", "_batch_id", BRONZE_PARTITION).agg(F.count("*").alias("n"), *aggs).collect()

    found: dict[str, dict[str, list]] = {}   # uri -> batch -> [day, records, rescued, malformed]
    for r in per_batch(layout.bronze, F.count(reader.quoted(source.rescued_data_column)).alias("rescued")):
        found.setdefault(r["_source_file"], {})[r["_batch_id"]] = [r[BRONZE_PARTITION], r["n"], r["rescued"], 0]
    for r in per_batch(layout.quarantine):
        found.setdefault(r["_source_file"], {}).setdefault(r["_batch_id"], [r[BRONZE_PARTITION], 0, 0, 0])[3] = r["n"]
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for uri, by_batch in found.items():
        file = listed.get(uri, (None, None))[0]
        (batch, (day, records, rescued, malformed)), *others = by_batch.items()
        note = "rebuilt from bronze lineage (the ledger did not know this file)"
        status = COMMITTED if not others else RELEASED
        out.append(Entry(uri, file.etag if file else "gone", file.size if file else 0, day, status, batch,
                         "lineage", now, now if status == COMMITTED else None, records, malformed, rescued,
                         note if not others else f"{note}; rows of {len(by_batch)} batches: the next load "
                                                 f"replaces them", 1))
    return out


def _run_batch(spark, source: SourceConfig, layout: Layout, batch: list[Planned], ledger: Ledger, run_id: str | None,
               result: IngestResult, log, reads: dict[str, str]) -> None:
    """Claim and load one batch. An error fails the batch's files in the ledger (never leaving them
    `processing`); a batch of several files is then retried file by file, so one poison file fails
    alone and the rest of the batch lands."""
    batch_id = str(uuid.uuid4())
    won = ledger.claim(batch_id, this_owner(run_id), [(p.file, p.day, p.seen) for p in batch])
    result.skipped_busy += len(batch) - len(won)
    claimed = [p for p in batch if p.file.uri in won]
    checkpoint("claimed")
    if not claimed:
        return
    result.batch_ids.append(batch_id)
    try:
        _load(spark, source, layout, claimed, batch_id, result, ledger, log, reads)
        return
    except NewColumnsError as exc:
        ledger.finish(batch_id, {p.file.uri: {"status": FAILED, "error": str(exc)} for p in claimed})
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:500]}"
        ledger.finish(batch_id, {p.file.uri: {"status": FAILED, "error": reason} for p in claimed})
        if not isinstance(exc, Exception):
            raise
    log(f"batch {batch_id} of {len(claimed)} file(s) failed: {reason}"
        + ("; retrying its files one by one" if len(claimed) > 1 else ""))
    if len(claimed) == 1:
        result.failed[claimed[0].file.uri] = reason
        return
    entries = ledger.entries([p.file.uri for p in claimed])
    for p in claimed:
        _run_batch(spark, source, layout, [Planned(p.file, p.day, entries.get(p.file.uri))], ledger, run_id,
                   result, log, reads)


def batches(planned: list, max_files: int, max_bytes: int) -> list[list]:
    """Consecutive groups of at most max_files files and (beyond the first file) max_bytes bytes."""
    batches, current, size = [], [], 0
    for p in planned:
        file = getattr(p, "file", p)  # a Planned or a FileInfo
        if current and (len(current) >= max_files or size + file.size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(p)
        size += file.size
    return batches + [current] if current else batches


def _load(spark, source: SourceConfig, layout: Layout, claimed: list[Planned], batch_id: str, result: IngestResult,
          ledger: Ledger, log, reads: dict[str, str]) -> None:
    files = [{"uri": p.file.uri, "etag": p.file.etag, "size": p.file.size, "day": p.day,
              "salvage": source.on_corrupt == "salvage", "framing": source.framing.as_dict(),
              "partition_values": partition_values(p.file.uri, source.partition_columns),
              "read_uri": reads.get(p.file.uri)} for p in claimed]
    try:
        _load_files(spark, source, layout, claimed, files, batch_id, result, ledger, log)
    finally:
        reader.release(files)


def _load_files(spark, source: SourceConfig, layout: Layout, claimed: list[Planned], files: list[dict], batch_id: str,
                result: IngestResult, ledger: Ledger, log) -> None:
    # 1. Scan: infer every record of the batch (not a sample) and find malformed lines.
    scans = reader.scan(spark, files, keep_parsed=is_embedded(spark))
    failed = {uri: r["error"] for uri, r in scans.items() if r["error"]}
    readable = [f for f in files if f["uri"] not in failed]
    checkpoint("scanned", [f["uri"] for f in files])
    log(f"scanned {len(files)} file(s): {sum(r['records'] for r in scans.values())} record(s)"
        + (f", {len(failed)} unreadable" if failed else ""))

    # 2. Schema: evolve the accepted schema by what the batch holds.
    schema_log = SchemaLog(layout.schemas)
    accepted = schema_log.current()
    seen: T.DataType = T.StructType([])
    introducing: list[str] = []
    for f in readable:
        file_schema = T.StructType.fromJson(json.loads(scans[f["uri"]]["schema"]))
        if accepted is None or not subsumes(accepted.schema, file_schema):
            introducing.append(f["uri"])
        seen = merge_types(seen, file_schema)
    reserved = frozenset(AUDIT_COLUMNS + (source.rescued_data_column,))
    mode = source.schema_evolution_mode if accepted is not None else "addNewColumns"
    evolution = evolve(accepted.schema if accepted else T.StructType([]), seen, mode, source.hints, reserved)
    result.rejected_fields.update(evolution.rejected)
    if source.schema_evolution_mode == "failOnNewColumns" and accepted is not None and evolution.new_fields:
        grown = evolve(accepted.schema, seen, "addNewColumns", source.hints, reserved).schema
        schema_log.set_pending(grown, introducing, evolution.new_fields)
        raise NewColumnsError(source.name, evolution.new_fields, introducing)
    target = evolution.schema
    if accepted is None or target != accepted.schema:
        version = schema_log.record(target, "initial inference" if accepted is None else "new fields",
                                    introducing)
        if version is None:
            raise IngestError(f"source {source.name!r}: another run changed the schema log at the same time; "
                              f"rerun (nothing was written)")
        change = diff(accepted.schema if accepted else T.StructType([]), target)
        result.schema_changes.append((version.version, change))
        log(f"schema version {version.version}: {change.as_dict()}")
        result.schema_version = version.version
        checkpoint("schema_recorded")
    else:
        result.schema_version = accepted.version

    # 3. Table schema first (a schema-only commit), so the batch can be parsed into exactly it.
    table_schema = tables.schema_or_none(spark, layout.bronze)
    bronze_schema = bronze_table_schema(target, source.rescued_data_column)
    if table_schema is None or not subsumes(table_schema, bronze_schema):
        tables.retry_conflicts(lambda: tables.add_columns(spark, layout.bronze, bronze_schema, BRONZE_PARTITION,
                                                          f"{batch_id} schema"))
        table_schema = tables.schema_or_none(spark, layout.bronze)
        checkpoint("table_evolved", [f["uri"] for f in files])
    data_schema = T.StructType([f for f in table_schema.fields
                                if f.name not in AUDIT_COLUMNS and f.name != source.rescued_data_column])

    # 4. Rows: parsed into the table's schema, with rescued data and audit columns.
    ingested_at = F.lit(dt.datetime.now(dt.timezone.utc)).cast("timestamp")
    audit = [ingested_at.alias("_ingested_at"), F.lit(batch_id).alias("_batch_id")]
    reader.plan_reads(readable, scans)
    rows = reader.good_rows(spark, readable, target, data_schema, source.rescued_data_column,
                            rescue_unknown=source.schema_evolution_mode != "none", audit=audit)

    # 5. Write: quarantine, then bronze. Fresh files append; others replace their own rows.
    # Only files the ledger has never seen can be appended: any earlier claim (even one that
    # failed) may have left rows of an older version, which a replace takes out.
    fresh = all(p.seen is None for p in claimed if p.file.uri not in failed)
    write_mode = "append" if fresh else "replace"
    result.write_modes.add(write_mode)
    uris = [f["uri"] for f in readable]
    days = sorted({f["day"] for f in readable} | {p.seen.landing_date for p in claimed if p.seen})
    scope = (f"t.{BRONZE_PARTITION} IN ({', '.join(map(tables.sql_string, days))}) AND "
             f"t._source_file IN ({', '.join(map(tables.sql_string, uris))})")
    with_malformed = [f for f in readable if scans[f["uri"]]["malformed"] != "[]"]
    if uris and (with_malformed or not fresh):
        bad = reader.malformed_rows(spark, with_malformed, audit)
        _write(spark, bad, layout.quarantine, fresh, scope, batch_id, log, QUARANTINE_SCHEMA)
        if tables.duplicate_keys(spark, layout.quarantine, list(ROW_KEY), "_source_file",
                                 where=F.col(BRONZE_PARTITION).isin(days) & (F.col("_batch_id") == batch_id)):
            _undouble(spark, layout.quarantine, batch_id, scope, log)
        checkpoint("quarantine_written", [f["uri"] for f in files])
    if uris:
        _write(spark, rows, layout.bronze, fresh, scope, batch_id, log)
        checkpoint("bronze_written", [f["uri"] for f in files])

    # 6. Count what landed per file (from the table itself) and mark the files committed.
    outcomes = _outcomes(spark, layout, source, batch_id, days, scans, readable, scope, log)
    skip = source.on_corrupt == "skip"
    outcomes.update({uri: {"status": SKIPPED if skip and storage.CORRUPT in error else FAILED, "error": error}
                     for uri, error in failed.items()})
    for f in readable:
        if scans[f["uri"]]["lost"] and outcomes[f["uri"]]["status"] == COMMITTED:
            outcomes[f["uri"]]["error"] = scans[f["uri"]]["lost"]
            result.salvaged[f["uri"]] = scans[f["uri"]]["lost"]
            log(f"{f['uri']}: {scans[f['uri']]['lost']}")
    ledger.finish(batch_id, outcomes)
    checkpoint("committed")

    records = sum(o.get("records") or 0 for o in outcomes.values())
    malformed = sum(o.get("malformed") or 0 for o in outcomes.values())
    rescued = sum(o.get("rescued") or 0 for o in outcomes.values())
    loaded = [f for f in readable if outcomes[f["uri"]]["status"] == COMMITTED]
    result.files += len(loaded)
    result.bytes += sum(f["size"] for f in loaded)
    result.records += records
    result.malformed += malformed
    result.rescued += rescued
    if source.schema_evolution_mode == "none":
        result.ignored_fields = sorted(set(result.ignored_fields) | set(evolution.new_fields)
                                       | set(evolution.rejected))
    result.failed.update({u: o["error"] for u, o in outcomes.items() if o["status"] == FAILED})
    result.skipped_corrupt.update({u: o["error"] for u, o in outcomes.items() if o["status"] == SKIPPED})
    log(f"{source.name}: {write_mode} {records} row(s) from {len(loaded)} file(s) "
        f"({malformed} malformed, {rescued} with rescued data) -> {layout.bronze}")


def _write(spark, df, uri: str, fresh: bool, scope: str, batch_id: str, log, create_schema=None) -> None:
    """Append or replace; when the write fails, our own commit (the batch id in its metadata) is
    looked for first: S3 can apply a PUT and still answer 500, and then the rows are in."""
    try:
        if fresh:
            tables.retry_conflicts(lambda: tables.append(df, uri, partition_by=BRONZE_PARTITION, metadata=batch_id))
            return
        existing = tables.schema_or_none(spark, uri)
        if existing is None or not set(df.columns) <= set(existing.fieldNames()):  # also: a table from before _record
            tables.add_columns(spark, uri, create_schema or df.schema, BRONZE_PARTITION, f"{batch_id} schema")
        tables.retry_conflicts(lambda: tables.replace_scope(spark, df, uri, keys=list(ROW_KEY), scope=scope,
                                                            metadata=batch_id))
    except Exception as exc:
        if is_commit_conflict(exc) or not (commits_of(uri, batch_id) or _has_batch(spark, uri, batch_id)):
            raise
        log(f"{uri}: the write of batch {batch_id} failed ({str(exc).splitlines()[0][:200]}) but its commit "
            f"is in the table: the storage applied it; checking what landed")


def _has_batch(spark, uri: str, batch_id: str) -> bool:
    return tables.schema_or_none(spark, uri) is not None and \
        bool(tables.read(spark, uri).where(F.col("_batch_id") == batch_id).limit(1).collect())


def _undouble(spark, uri: str, batch_id: str, scope: str, log) -> None:
    """Keep one copy of each row of this batch (after an ambiguous commit the engine retried)."""
    applied = commits_of(uri, batch_id)
    log(f"{uri}: batch {batch_id} landed more rows than it read; its commit is in the history "
        f"{len(applied)} time(s) (versions {applied}; S3 applied a commit and answered with an error, so the "
        f"engine committed again): keeping one copy of each row")
    tables.retry_conflicts(lambda: tables.dedupe(spark, uri, keys=list(ROW_KEY), scope=f"t._batch_id = "
                                                 f"{tables.sql_string(batch_id)} AND {scope}", metadata=batch_id))


def _batch_counts(spark, layout: Layout, source: SourceConfig, batch_id: str, days: list[str]) -> dict:
    rescued = source.rescued_data_column
    return {r["_source_file"]: r for r in (tables.read(spark, layout.bronze)
                                           .where(F.col(BRONZE_PARTITION).isin(days) & (F.col("_batch_id") == batch_id))
                                           .groupBy("_source_file")
                                           .agg(F.count("*").alias("records"), F.count(rescued).alias("rescued"))
                                           .collect())}


def _outcomes(spark, layout: Layout, source: SourceConfig, batch_id: str, days: list[str], scans: dict,
              readable: list[dict], scope: str, log) -> dict[str, dict]:
    counts = _batch_counts(spark, layout, source, batch_id, days) if readable else {}
    if any(r["records"] > scans[uri]["records"] for uri, r in counts.items() if uri in scans):
        _undouble(spark, layout.bronze, batch_id, scope, log)
        counts = _batch_counts(spark, layout, source, batch_id, days)
    outcomes = {}
    for f in readable:
        scan, got = scans[f["uri"]], counts.get(f["uri"])
        records = got["records"] if got else 0
        if records != scan["records"]:
            gone = _changed_since_scan(f) if records == 0 else None
            if gone:
                outcomes[f["uri"]] = {"status": FAILED, "error": gone}
                continue
            raise IngestError(f"{f['uri']}: scanned {scan['records']} record(s) but {records} landed in "
                              f"{layout.bronze}; the batch is left uncommitted and will be replaced on rerun")
        malformed = json.loads(scan["malformed"])
        outcomes[f["uri"]] = {"status": COMMITTED, "records": records, "rescued": got["rescued"] if got else 0,
                              "malformed": len(malformed) if malformed is not None else None}
    if any(o["status"] == COMMITTED and o["malformed"] is None for o in outcomes.values()):
        for r in (tables.read(spark, layout.quarantine).where(F.col("_batch_id") == batch_id)
                  .groupBy("_source_file").count().collect()):
            if outcomes.get(r["_source_file"], {}).get("malformed") is None:
                outcomes[r["_source_file"]]["malformed"] = r["count"]
    return outcomes


def _changed_since_scan(f: dict) -> str | None:
    """Why a scanned file can no longer be read as that version, or None if it still can."""
    try:
        storage.read_bytes(f.get("read_uri") or f["uri"], f["etag"])
        return None
    except storage.StorageError as exc:
        return str(exc)


def bronze_table_schema(data: T.StructType, rescued_column: str) -> T.StructType:
    return T.StructType(list(data.fields) + [
        T.StructField(rescued_column, T.StringType()), T.StructField("_source_file", T.StringType()),
        T.StructField("_line", T.LongType()), T.StructField("_record", T.LongType()),
        T.StructField("_ingested_at", T.TimestampType()),
        T.StructField("_batch_id", T.StringType()), T.StructField(BRONZE_PARTITION, T.StringType()),
    ])


def _with_table_facts(spark, layout: Layout, result: IngestResult) -> IngestResult:
    result.table_version = table_version(layout.bronze)
    schema = tables.schema_or_none(spark, layout.bronze)
    result.schema = schema
    if result.schema_version is None:
        current = SchemaLog(layout.schemas).current()
        result.schema_version = current.version if current else None
    return result


def _span(days: list[str]) -> str:
    days = sorted(days)
    return days[0] if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)"
