"""Bronze ingestion: landing files of some days -> the source's append-only Delta table.

A run lists the landing, plans which files to take and claims them in the ledger, batch by batch.
A claimed `Batch` then moves through named stages, each with one side effect, with the fault
checkpoints between them: scan (infer every record, find the malformed lines) -> plan the batch and
decide its schema (pure; failOnNewColumns refuses here) -> record the schema -> prepare the table (a
schema-only commit) -> write the quarantine, then bronze -> reconcile with the ledger (count what
landed, mark it committed). Files never claimed before are appended; files whose earlier claim
died, that were overwritten, or that a backfill reprocesses have their rows replaced in one MERGE,
so a rerun after a crash at any point leaves each file's rows exactly once.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets import storage
from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core import archive, reader, tables
from lake_assets.core.delta_meta import commits_of, table_version
from lake_assets.core.discovery import list_days
from lake_assets.core.faults import checkpoint
from lake_assets.core.layout import (AUDIT_COLUMNS, BATCH_ID, BRONZE_PARTITION, ERROR, INGESTED_AT, LINE, RAW,
                                    RECORD, ROW_KEY, SOURCE_FILE, Layout)
from lake_assets.core.ledger import (COMMITTED, FAILED, RELEASED, SKIPPED, Entry, Ledger, LedgerUnreadable, Outcome,
                                    is_stale, this_owner)
from lake_assets.core.partitions import landing_date
from lake_assets.core.reader import FileTask, ScanResult
from lake_assets.core.schema import Evolution, SchemaDiff, diff, evolve, merge_types, subsumes
from lake_assets.core.schema_log import SchemaLog, SchemaVersion
from lake_assets.core.selection import Selection, partition_values
from lake_assets.engine import is_embedded
from lake_assets.errors import LakeError, is_commit_conflict

QUARANTINE_SCHEMA = T.StructType([
    T.StructField(SOURCE_FILE, T.StringType()), T.StructField(LINE, T.LongType()),
    T.StructField(RECORD, T.LongType()), T.StructField(RAW, T.StringType()), T.StructField(ERROR, T.StringType()),
    T.StructField(BATCH_ID, T.StringType()), T.StructField(INGESTED_AT, T.TimestampType()),
    T.StructField(BRONZE_PARTITION, T.StringType()),
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
    skipped_overwritten: int = 0  # overwritten since loaded, left as loaded (on_overwrite: ignore)
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
    """A listed file this run means to claim: its landing date and the ledger entry the plan saw."""
    file: storage.FileInfo
    day: str
    seen: Entry | None


@dataclass(frozen=True)
class Batch:
    """A claimed batch on its way through the stages."""
    id: str
    source: SourceConfig
    layout: Layout
    claimed: list[Planned]
    tasks: list[FileTask]   # the claimed files, as the readers take them

    @property
    def uris(self) -> list[str]:
        return [t.uri for t in self.tasks]


@dataclass(frozen=True)
class BatchPlan:
    """How a scanned batch goes into the tables (plan_batch), decided before anything is written."""
    scans: dict[str, ScanResult]
    readable: list[FileTask]   # scanned: their rows are written
    failed: dict[str, str]     # unreadable: uri -> why
    fresh: bool                # no readable file was ever claimed: append, else replace their rows
    days: list[str]            # the landing dates their rows are in, or were in
    ingested_at: dt.datetime

    @property
    def mode(self) -> str:
        return "append" if self.fresh else "replace"

    @property
    def with_malformed(self) -> list[FileTask]:
        return [t for t in self.readable if self.scans[t.uri].has_malformed]

    @property
    def scope(self) -> str:
        """The replace's condition on the table (`t`): these files' rows, in the days they are or were in."""
        return (f"t.{BRONZE_PARTITION} IN ({', '.join(map(tables.sql_string, self.days))}) AND "
                f"t.{SOURCE_FILE} IN ({', '.join(tables.sql_string(t.uri) for t in self.readable)})")

    def audit(self, batch_id: str) -> list:
        """The audit columns every row of the batch gets (besides its file, line and landing date)."""
        return [F.lit(self.ingested_at).cast("timestamp").alias(INGESTED_AT), F.lit(batch_id).alias(BATCH_ID)]


@dataclass(frozen=True)
class SchemaDecision:
    """What a batch's records mean for the accepted schema (decide_schema)."""
    accepted: SchemaVersion | None
    evolution: Evolution            # .schema: the schema the batch is written with
    introducing: list[str]          # files holding what the accepted schema lacks
    refused: T.StructType | None    # failOnNewColumns met new fields: the schema they would make

    @property
    def target(self) -> T.StructType:
        return self.evolution.schema

    @property
    def changed(self) -> bool:
        return self.accepted is None or self.target != self.accepted.schema


@dataclass(frozen=True)
class _Run:
    """What every batch of one ingest shares."""
    spark: object
    source: SourceConfig
    layout: Layout
    ledger: Ledger
    owner: str
    reads: dict[str, str]   # landing URI -> the archived copy to read it from (from_archive)
    result: IngestResult
    log: Callable[[str], None]


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
    """Ingest the landing files of `days` (YYYY-MM-DD) into bronze, in batches (run_batches) bounded
    by the source's max_files_per_run / max_bytes_per_batch; `reprocess` re-reads committed files too;
    `max_batches` stops after that many runs' worth of files (a sensor's bounded run; the rest waits);
    `from_archive` reads the files clean_source moved under archive_to instead (with reprocess)."""
    layout = Layout(lake.warehouse, source.name)
    result = IngestResult(source.name, sorted(days))
    storage.check_bucket(lake.landing, "landing")
    storage.check_bucket(lake.warehouse, "warehouse")
    listed, ledger, reads = _list(spark, lake, source, layout, set(days), from_archive, result, log)
    checkpoint("listed")
    entries = _entries_with_lineage(spark, layout, source, ledger, listed, log)
    wanted, result.skipped_busy, result.skipped_overwritten = plan(listed, entries, source, reprocess, _now())
    _log_listing(lake, source, days, listed, wanted, result, log)
    run = _Run(spark, source, layout, ledger, this_owner(run_id), reads, result, log)
    done = 0
    for batch in run_batches(wanted, source, max_batches):
        _run_batch(run, batch)
        return_freed_memory()
        done += len(batch)
        if progress:
            progress(done, len(wanted))
    _log_problems(source, result, log)
    if source.clean_source != "off" and not from_archive:
        result.cleaned = archive.clean(lake.landing, source, listed, ledger.entries(), _now())
    return _with_table_facts(spark, layout, result)


def _list(spark, lake: LakeConfig, source: SourceConfig, layout: Layout, days: set[str], from_archive: bool,
          result: IngestResult, log) -> tuple[list[tuple[storage.FileInfo, str]], Ledger, dict[str, str]]:
    """The files of `days` (with from_archive: the archived copies, as the landing files they were),
    the ledger to plan them against and {landing URI: archived URI} to read them from."""
    if from_archive:
        ledger = Ledger(spark, layout.ledger)
        listed, reads = archive.archived_listing(lake.landing, source, days, ledger.entries())
        data_objects, dated = len(listed), False
    else:
        listed, result.skipped_unselected, data_objects, dated = listing(lake, source, days)
        # Dated keys: this run reads and merges only the ledger rows of its days.
        ledger, reads = Ledger(spark, layout.ledger, days if dated else None), {}
    if not data_objects and not dated:  # a dated listing saw only these days' folders
        log(f"warning: {source.name}: path {source.path!r} matches no data object on any day "
            f"({Selection.of(lake.landing, source).pattern}, include {list(source.include)}, exclude "
            f"{list(source.exclude)} and the default excludes)")
    return listed, ledger, reads


def _log_listing(lake: LakeConfig, source: SourceConfig, days: list[str], listed: list, wanted: list[Planned],
                 result: IngestResult, log) -> None:
    if not listed:
        log(f"{source.name} {_span(days)}: no files landed under {storage.join(lake.landing, source.path)} "
            f"for these days; nothing to ingest (files land by the date in their key, else their last-modified "
            f"day in UTC)")
        return
    log(f"{source.name} {_span(days)}: {len(listed)} file(s) landed, {len(wanted)} to ingest"
        + (f", {result.skipped_busy} claimed by another run" if result.skipped_busy else "")
        + (f", {result.skipped_overwritten} overwritten since loaded and left as loaded (on_overwrite: ignore)"
           if result.skipped_overwritten else "")
        + (f", {result.skipped_unselected} other object(s) skipped (not data)" if result.skipped_unselected else ""))


def _log_problems(source: SourceConfig, result: IngestResult, log) -> None:
    if result.skipped_corrupt:
        log(f"{source.name}: {len(result.skipped_corrupt)} corrupt file(s) skipped (on_corrupt: skip; ledger status "
            f"skipped): " + "; ".join(f"{uri}: {why}" for uri, why in sorted(result.skipped_corrupt.items())[:20]))
    if result.failed:
        log(f"{source.name}: {len(result.failed)} file(s) failed (ledger status failed; a rerun tries them again): "
            + "; ".join(f"{uri}: {why}" for uri, why in sorted(result.failed.items())[:20]))


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
            rows = rows.where(F.col(BRONZE_PARTITION).isin(days) & F.col(SOURCE_FILE).isin(list(listed)))
        return rows.groupBy(SOURCE_FILE, BATCH_ID, BRONZE_PARTITION).agg(F.count("*").alias("n"), *aggs).collect()

    found: dict[str, dict[str, list]] = {}   # uri -> batch -> [day, records, rescued, malformed]
    for r in per_batch(layout.bronze, F.count(tables.quoted(source.rescued_data_column)).alias("rescued")):
        found.setdefault(r[SOURCE_FILE], {})[r[BATCH_ID]] = [r[BRONZE_PARTITION], r["n"], r["rescued"], 0]
    for r in per_batch(layout.quarantine):
        found.setdefault(r[SOURCE_FILE], {}).setdefault(r[BATCH_ID], [r[BRONZE_PARTITION], 0, 0, 0])[3] = r["n"]
    now = _now()
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


def run_batches(planned: list, source: SourceConfig, max_batches: int | None = None) -> list[list]:
    """The first `max_batches` runs' worth of files (max_files_per_run / max_bytes_per_run: what one
    sensor run request takes), each cut into batches of at most max_bytes_per_batch that commit one
    by one (Auto Loader's maxBytesPerTrigger): a run's memory is bounded by its batch, not its size."""
    runs = batches(planned, source.max_files_per_run, source.max_bytes_per_run)[:max_batches]
    return [b for run in runs for b in batches(run, source.max_files_per_run, source.max_bytes_per_batch)]


@functools.cache
def _malloc_trim():
    import ctypes

    return getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the OS after a batch (glibc's malloc_trim; elsewhere a
    no-op). What a batch's scan allocated and freed (file bytes, per-line copies, numpy buffers)
    leaves holes in glibc's per-thread arenas, which it keeps: a day's batches crept from 0.37 to
    0.72 GiB resident between batches without this (4 GB with type conflicts, benchmarks/memory.py)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


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


def _run_batch(run: _Run, planned: list[Planned]) -> None:
    """Claim and load one batch. An error fails the batch's files in the ledger (never leaving them
    `processing`); a batch of several files is then retried file by file, so one poison file fails
    alone and the rest of the batch lands."""
    batch_id = str(uuid.uuid4())
    won = run.ledger.claim(batch_id, run.owner, [(p.file, p.day, p.seen) for p in planned])
    run.result.skipped_busy += len(planned) - len(won)
    claimed = [p for p in planned if p.file.uri in won]
    checkpoint("claimed")
    if not claimed:
        return
    run.result.batch_ids.append(batch_id)
    batch = Batch(batch_id, run.source, run.layout, claimed, [_task(run, p) for p in claimed])
    try:
        _load(run.spark, batch, run.ledger, run.result, run.log)
        return
    except NewColumnsError as exc:
        run.ledger.finish(batch_id, {uri: Outcome(FAILED, error=str(exc)) for uri in batch.uris})
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:500]}"
        run.ledger.finish(batch_id, {uri: Outcome(FAILED, error=reason) for uri in batch.uris})
        if not isinstance(exc, Exception):
            raise
    run.log(f"batch {batch_id} of {len(claimed)} file(s) failed: {reason}"
            + ("; retrying its files one by one" if len(claimed) > 1 else ""))
    if len(claimed) == 1:
        run.result.failed[claimed[0].file.uri] = reason
        return
    entries = run.ledger.entries(batch.uris)
    for p in claimed:
        _run_batch(run, [Planned(p.file, p.day, entries.get(p.file.uri))])


def _task(run: _Run, p: Planned) -> FileTask:
    source = run.source
    return FileTask(p.file.uri, p.file.etag, p.file.size, p.day, source.framing, source.on_corrupt == "salvage",
                    partition_values(p.file.uri, source.partition_columns), run.reads.get(p.file.uri))


def _load(spark, batch: Batch, ledger: Ledger, result: IngestResult, log) -> None:
    """One claimed batch through the stages, with a fault checkpoint after each side effect."""
    try:
        scans = _scan(spark, batch, log)
        checkpoint("scanned", batch.uris)
        plan = plan_batch(batch, scans, _now())
        decision = decide_schema(batch.source, SchemaLog(batch.layout.schemas).current(), plan)
        result.rejected_fields.update(decision.evolution.rejected)
        result.schema_version, change = _record_schema(batch, decision, log)
        if change is not None:
            result.schema_changes.append((result.schema_version, change))
            checkpoint("schema_recorded")
        data_schema, evolved = _prepare_table(spark, batch, decision.target)
        if evolved:
            checkpoint("table_evolved", batch.uris)
        result.write_modes.add(plan.mode)
        if _write_quarantine(spark, batch, plan, log):
            checkpoint("quarantine_written", batch.uris)
        if _write_bronze(spark, batch, plan, decision.target, data_schema, log):
            checkpoint("bronze_written", batch.uris)
        outcomes = _reconcile(spark, batch, plan, ledger, log)
        checkpoint("committed")
    finally:
        reader.release(batch.tasks)
    _tally(result, batch, plan, decision.evolution, outcomes, log)


def _scan(spark, batch: Batch, log) -> dict[str, ScanResult]:
    """Stage: read every file once, inferring every record (not a sample) and finding the malformed lines."""
    scans = reader.scan(spark, batch.tasks, keep_parsed=is_embedded(spark))
    unreadable = sum(1 for s in scans.values() if s.error)
    log(f"scanned {len(batch.tasks)} file(s): {sum(s.records for s in scans.values())} record(s)"
        + (f", {unreadable} unreadable" if unreadable else ""))
    return scans


def plan_batch(batch: Batch, scans: dict[str, ScanResult], now: dt.datetime) -> BatchPlan:
    """(pure) Which files' rows the batch writes, and how. Only files the ledger has never seen can
    be appended: any earlier claim (even one that failed) may have left rows of an older version,
    which a replace takes out."""
    failed = {uri: s.error for uri, s in scans.items() if s.error}
    readable = [t for t in batch.tasks if t.uri not in failed]
    fresh = all(p.seen is None for p in batch.claimed if p.file.uri not in failed)
    days = sorted({t.day for t in readable} | {p.seen.landing_date for p in batch.claimed if p.seen})
    return BatchPlan(scans, readable, failed, fresh, days, now)


def decide_schema(source: SourceConfig, accepted: SchemaVersion | None, plan: BatchPlan) -> SchemaDecision:
    """(pure) The schema the batch is written with: the accepted one evolved, by the source's
    schema_evolution_mode, with what the readable files hold (merged in batch order: the first seen
    wins a conflict). failOnNewColumns refuses new fields (`refused`); nothing is written then."""
    seen: T.DataType = T.StructType([])
    introducing: list[str] = []
    for t in plan.readable:
        file_schema = plan.scans[t.uri].schema
        if accepted is None or not subsumes(accepted.schema, file_schema):
            introducing.append(t.uri)
        seen = merge_types(seen, file_schema)
    reserved = frozenset(AUDIT_COLUMNS + (source.rescued_data_column,))
    current = accepted.schema if accepted else T.StructType([])
    mode = source.schema_evolution_mode if accepted is not None else "addNewColumns"
    evolution = evolve(current, seen, mode, source.hints, reserved)
    refused = None
    if source.schema_evolution_mode == "failOnNewColumns" and accepted is not None and evolution.new_fields:
        refused = evolve(current, seen, "addNewColumns", source.hints, reserved).schema
    return SchemaDecision(accepted, evolution, introducing, refused)


def _record_schema(batch: Batch, decision: SchemaDecision, log) -> tuple[int | None, SchemaDiff | None]:
    """Stage: the decision into the schema log. A refused schema becomes the pending one (and the
    batch stops); a changed one a new version. (The version the batch is written with, the change.)"""
    schema_log, accepted = SchemaLog(batch.layout.schemas), decision.accepted
    if decision.refused is not None:
        schema_log.set_pending(decision.refused, decision.introducing, decision.evolution.new_fields)
        raise NewColumnsError(batch.source.name, decision.evolution.new_fields, decision.introducing)
    if not decision.changed:
        return accepted.version, None
    version = schema_log.record(decision.target, "initial inference" if accepted is None else "new fields",
                                decision.introducing)
    if version is None:
        raise IngestError(f"source {batch.source.name!r}: another run changed the schema log at the same time; "
                          f"rerun (nothing was written)")
    change = diff(accepted.schema if accepted else T.StructType([]), decision.target)
    log(f"schema version {version.version}: {change.as_dict()}")
    return version.version, change


def _prepare_table(spark, batch: Batch, target: T.StructType) -> tuple[T.StructType, bool]:
    """Stage: the table's columns first (a schema-only commit), so the batch can be parsed into
    exactly them. (The table's data columns, whether it had to change.)"""
    uri, rescued = batch.layout.bronze, batch.source.rescued_data_column
    table_schema = tables.schema_or_none(spark, uri)
    wanted = bronze_table_schema(target, rescued)
    evolved = table_schema is None or not subsumes(table_schema, wanted)
    if evolved:
        tables.retry_conflicts(lambda: tables.add_columns(spark, uri, wanted, BRONZE_PARTITION, f"{batch.id} schema"))
        table_schema = tables.schema_or_none(spark, uri)
    return T.StructType([f for f in table_schema.fields if f.name not in AUDIT_COLUMNS and f.name != rescued]), evolved


def _write_quarantine(spark, batch: Batch, plan: BatchPlan, log) -> bool:
    """Stage: the malformed lines into the quarantine; a replace also takes out the files' earlier
    ones (so it runs when none are malformed now). Whether it wrote."""
    if not plan.readable or not (plan.with_malformed or not plan.fresh):
        return False
    uri = batch.layout.quarantine
    bad = reader.malformed_rows(spark, plan.with_malformed, plan.scans, plan.audit(batch.id))
    _write(spark, bad, uri, plan, batch.id, log, QUARANTINE_SCHEMA)
    if tables.duplicate_keys(spark, uri, list(ROW_KEY), SOURCE_FILE,
                             where=F.col(BRONZE_PARTITION).isin(plan.days) & (F.col(BATCH_ID) == batch.id)):
        _undouble(spark, uri, batch.id, plan.scope, log)
    return True


def _write_bronze(spark, batch: Batch, plan: BatchPlan, target: T.StructType, data_schema: T.StructType,
                  log) -> bool:
    """Stage: the records as bronze rows, parsed into the table's data columns, with rescued data
    and audit columns. Whether it wrote."""
    if not plan.readable:
        return False
    source = batch.source
    rows = reader.good_rows(spark, plan.readable, plan.scans, target, data_schema, source.rescued_data_column,
                            rescue_unknown=source.schema_evolution_mode != "none", audit=plan.audit(batch.id))
    _write(spark, rows, batch.layout.bronze, plan, batch.id, log)
    return True


def _write(spark, df, uri: str, plan: BatchPlan, batch_id: str, log, create_schema=None) -> None:
    """Append or replace; when the write fails, our own commit (the batch id in its metadata) is
    looked for first: S3 can apply a PUT and still answer 500, and then the rows are in."""
    try:
        if plan.fresh:
            tables.retry_conflicts(lambda: tables.append(df, uri, partition_by=BRONZE_PARTITION, metadata=batch_id))
            return
        existing = tables.schema_or_none(spark, uri)
        if existing is None or not set(df.columns) <= set(existing.fieldNames()):  # also: a table from before _record
            tables.add_columns(spark, uri, create_schema or df.schema, BRONZE_PARTITION, f"{batch_id} schema")
        tables.retry_conflicts(lambda: tables.replace_scope(spark, df, uri, keys=list(ROW_KEY), scope=plan.scope,
                                                            metadata=batch_id))
    except Exception as exc:
        if is_commit_conflict(exc) or not (commits_of(uri, batch_id) or _has_batch(spark, uri, batch_id)):
            raise
        log(f"{uri}: the write of batch {batch_id} failed ({str(exc).splitlines()[0][:200]}) but its commit "
            f"is in the table: the storage applied it; checking what landed")


def _has_batch(spark, uri: str, batch_id: str) -> bool:
    return tables.schema_or_none(spark, uri) is not None and \
        bool(tables.read(spark, uri).where(F.col(BATCH_ID) == batch_id).limit(1).collect())


def _undouble(spark, uri: str, batch_id: str, scope: str, log) -> None:
    """Keep one copy of each row of this batch (after an ambiguous commit the engine retried)."""
    applied = commits_of(uri, batch_id)
    log(f"{uri}: batch {batch_id} landed more rows than it read; its commit is in the history "
        f"{len(applied)} time(s) (versions {applied}; S3 applied a commit and answered with an error, so the "
        f"engine committed again): keeping one copy of each row")
    tables.retry_conflicts(lambda: tables.dedupe(spark, uri, keys=list(ROW_KEY), scope=f"t.{BATCH_ID} = "
                                                 f"{tables.sql_string(batch_id)} AND {scope}", metadata=batch_id))


def _reconcile(spark, batch: Batch, plan: BatchPlan, ledger: Ledger, log) -> dict[str, Outcome]:
    """Stage: count what landed per file (from the table itself) and record each claimed file's
    outcome in the ledger: committed, failed, or skipped (on_corrupt: skip)."""
    outcomes = _landed(spark, batch, plan, log)
    skip = batch.source.on_corrupt == "skip"
    outcomes.update({uri: Outcome(SKIPPED if skip and storage.CORRUPT in error else FAILED, error=error)
                     for uri, error in plan.failed.items()})
    for t in plan.readable:
        lost = plan.scans[t.uri].lost
        if lost and outcomes[t.uri].status == COMMITTED:   # on_corrupt: salvage
            outcomes[t.uri] = replace(outcomes[t.uri], error=lost)
            log(f"{t.uri}: {lost}")
    ledger.finish(batch.id, outcomes)
    return outcomes


def _landed(spark, batch: Batch, plan: BatchPlan, log) -> dict[str, Outcome]:
    """Each readable file's outcome by its rows in bronze (kept once, if the engine committed the
    batch twice): committed when as many as scanned landed; failed when none did because the file
    changed since the scan; anything else stops the batch, uncommitted."""
    counts = _batch_counts(spark, batch, plan.days) if plan.readable else {}
    if any(r["records"] > plan.scans[uri].records for uri, r in counts.items() if uri in plan.scans):
        _undouble(spark, batch.layout.bronze, batch.id, plan.scope, log)
        counts = _batch_counts(spark, batch, plan.days)
    outcomes = {}
    for t in plan.readable:
        scan, got = plan.scans[t.uri], counts.get(t.uri)
        records = got["records"] if got else 0
        if records != scan.records:
            gone = _changed_since_scan(t) if records == 0 else None
            if not gone:
                raise IngestError(f"{t.uri}: scanned {scan.records} record(s) but {records} landed in "
                                  f"{batch.layout.bronze}; the batch is left uncommitted and will be replaced on rerun")
            outcomes[t.uri] = Outcome(FAILED, error=gone)
            continue
        outcomes[t.uri] = Outcome(COMMITTED, records, len(scan.malformed) if scan.malformed is not None else None,
                                  got["rescued"] if got else 0)
    return _with_quarantined(spark, batch, outcomes)


def _batch_counts(spark, batch: Batch, days: list[str]) -> dict:
    return {r[SOURCE_FILE]: r for r in (tables.read(spark, batch.layout.bronze)
                                        .where(F.col(BRONZE_PARTITION).isin(days) & (F.col(BATCH_ID) == batch.id))
                                        .groupBy(SOURCE_FILE)
                                        .agg(F.count("*").alias("records"),
                                             F.count(batch.source.rescued_data_column).alias("rescued"))
                                        .collect())}


def _with_quarantined(spark, batch: Batch, outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    """The malformed counts the scan did not keep (more lines than it tracks), from the quarantine."""
    if not any(o.status == COMMITTED and o.malformed is None for o in outcomes.values()):
        return outcomes
    counted = {r[SOURCE_FILE]: r["count"] for r in (tables.read(spark, batch.layout.quarantine)
                                                     .where(F.col(BATCH_ID) == batch.id)
                                                     .groupBy(SOURCE_FILE).count().collect())}
    return {uri: replace(o, malformed=counted[uri]) if o.malformed is None and uri in counted else o
            for uri, o in outcomes.items()}


def _changed_since_scan(t: FileTask) -> str | None:
    """Why a scanned file can no longer be read as that version, or None if it still can."""
    try:
        storage.read_bytes(t.read_uri or t.uri, t.etag)
        return None
    except storage.StorageError as exc:
        return str(exc)


def _tally(result: IngestResult, batch: Batch, plan: BatchPlan, evolution: Evolution,
           outcomes: dict[str, Outcome], log) -> None:
    """Add a reconciled batch to the run's result."""
    loaded = [t for t in plan.readable if outcomes[t.uri].status == COMMITTED]
    records = sum(o.records or 0 for o in outcomes.values())
    malformed = sum(o.malformed or 0 for o in outcomes.values())
    rescued = sum(o.rescued or 0 for o in outcomes.values())
    result.files += len(loaded)
    result.bytes += sum(t.size for t in loaded)
    result.records += records
    result.malformed += malformed
    result.rescued += rescued
    result.salvaged.update({t.uri: plan.scans[t.uri].lost for t in loaded if plan.scans[t.uri].lost})
    if batch.source.schema_evolution_mode == "none":
        result.ignored_fields = sorted(set(result.ignored_fields) | set(evolution.new_fields) | set(evolution.rejected))
    result.failed.update({u: o.error for u, o in outcomes.items() if o.status == FAILED})
    result.skipped_corrupt.update({u: o.error for u, o in outcomes.items() if o.status == SKIPPED})
    log(f"{batch.source.name}: {plan.mode} {records} row(s) from {len(loaded)} file(s) "
        f"({malformed} malformed, {rescued} with rescued data) -> {batch.layout.bronze}")


def bronze_table_schema(data: T.StructType, rescued_column: str) -> T.StructType:
    return T.StructType(list(data.fields) + [
        T.StructField(rescued_column, T.StringType()), T.StructField(SOURCE_FILE, T.StringType()),
        T.StructField(LINE, T.LongType()), T.StructField(RECORD, T.LongType()),
        T.StructField(INGESTED_AT, T.TimestampType()),
        T.StructField(BATCH_ID, T.StringType()), T.StructField(BRONZE_PARTITION, T.StringType()),
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
