"""Operator actions over a source's ledger, tables and schema log: status, validate, repair,
reprocess and reset. The CLI and the Dagster jobs are thin layers over these."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from pyspark.sql import functions as F

from lake_assets import storage
from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core import tables
from lake_assets.core.bronze import ingest, lineage_entries, list_landing, listing
from lake_assets.core.delta_meta import table_version
from lake_assets.core.layout import BATCH_ID, LANDING_DATE, ROW_KEY, SOURCE_FILE, Layout
from lake_assets.core.ledger import COMMITTED, RELEASED, Ledger, LedgerUnreadable, as_utc, is_stale, this_owner
from lake_assets.core.schema_log import SchemaLog
from lake_assets.errors import LakeError
from lake_assets.storage import FileInfo


class OperatorError(LakeError, ValueError):
    """Bad operator input; nothing was changed."""


def parse_day(text: str, what: str = "date") -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise OperatorError(f"{what} {text!r} is not a date like 2026-11-20") from None


def day_range(start: str, end: str) -> list[str]:
    first, last = parse_day(start, "--from"), parse_day(end, "--to")
    if last < first:
        raise OperatorError(f"--to {end} is before --from {start}")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


STATUS_LOOKBACK_DAYS = 7   # `lake status` without --from/--to: the last 7 landing days up to today (UTC)


def status_days(start: str | None, end: str | None, today: dt.date) -> list[str]:
    """The landing days `lake status` reports: --from (default: STATUS_LOOKBACK_DAYS days before
    the last) .. --to (default: today)."""
    span = dt.timedelta(days=STATUS_LOOKBACK_DAYS - 1)
    last = parse_day(end, "--to") if end else today
    first = parse_day(start, "--from") if start else last - span
    return day_range(first.isoformat(), last.isoformat())


def source_status(spark, lake: LakeConfig, source: SourceConfig, days: list[str] | None = None) -> dict:
    """Counts of the landing `days` (None: every day) summarised by the engine (the ledger is never
    collected; with days, only those days' folders are listed and only their ledger rows read), and
    the landed files the ledger does not know at their ETag (pending: the ledger records files once
    claimed)."""
    layout = Layout(lake.warehouse, source.name)
    files: dict[str, int] = {}
    totals, last = {"records": 0, "malformed": 0, "rescued": 0}, None
    listed, skipped, _, _ = listing(lake, source, set(days) if days is not None else None)
    landed = [(f.uri, f.etag) for f, _ in listed]
    pending = len(landed)
    if tables.schema_or_none(spark, layout.ledger) is not None:
        try:
            ledger = tables.read(spark, layout.ledger)
            if days is not None:   # the partition column: the engine reads only these days
                ledger = ledger.where(F.col("landing_date").isin(days))
            # one pass over the ledger's days: counts by status, and the committed files' sums and last commit
            rows = ledger.groupBy("status").agg(
                F.count(F.lit(1)).alias("files"), *(F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in totals),
                F.max_by("batch_id", "committed_at").alias("batch_id"), F.max("committed_at").alias("committed_at"),
            ).collect()
            files = {r["status"]: r["files"] for r in rows}
            last = next((r for r in rows if r["status"] == COMMITTED), None)
            if last is not None:
                totals = {c: last[c] for c in totals}
            pending = spark.createDataFrame(landed, "uri string, etag string") \
                .join(ledger.select("uri", "etag"), ["uri", "etag"], "left_anti").count() if landed else 0
        except Exception as exc:  # noqa: BLE001 - any engine error reading it means the same
            raise LedgerUnreadable.of(layout.ledger, exc, source.name) from exc
    schema = SchemaLog(layout.schemas)
    current = schema.current()
    last_row = last if last is not None and last["committed_at"] is not None else None
    return {
        "source": source.name,
        "days": {"from": days[0], "to": days[-1]} if days is not None else "all",
        "files": {**files, "pending": pending, "skipped_not_data": skipped},
        "records": totals["records"],
        "malformed": totals["malformed"],
        "rescued_rate": round(totals["rescued"] / totals["records"], 6) if totals["records"] else 0.0,
        "last_batch": last_row["batch_id"] if last_row else None,
        "last_commit": as_utc(last_row["committed_at"]).isoformat(timespec="seconds") if last_row else None,
        "schema_version": current.version if current else None,
        "schema_pending": schema.pending() is not None,
        "table": layout.bronze,
        "table_version": table_version(layout.bronze),
    }


@dataclass
class Problems:
    orphaned_claims: list[str] = field(default_factory=list)      # processing, owner gone
    missing_rows: list[str] = field(default_factory=list)         # committed, table rows differ
    unknown_batch_rows: dict[str, int] = field(default_factory=dict)  # file -> rows of other batches
    unknown_files: dict[str, int] = field(default_factory=dict)   # rows of files the ledger lacks
    duplicate_rows: dict[str, int] = field(default_factory=dict)  # file -> extra copies of its lines

    @property
    def count(self) -> int:
        return (len(self.orphaned_claims) + len(self.missing_rows) + len(self.unknown_batch_rows)
                + len(self.unknown_files) + len(self.duplicate_rows))

    def describe(self) -> list[str]:
        out = [f"orphaned claim (run died): {u}" for u in self.orphaned_claims]
        out += [f"committed file whose rows do not match the ledger (table or quarantine): {u}"
                for u in self.missing_rows]
        out += [f"{n} row(s) of an unknown batch for {u}" for u, n in self.unknown_batch_rows.items()]
        out += [f"{n} row(s) from a file the ledger does not know: {u}" for u, n in self.unknown_files.items()]
        out += [f"{n} duplicate row(s) (the same file and line more than once): {u}"
                for u, n in self.duplicate_rows.items()]
        return out


def validate(spark, lake: LakeConfig, source: SourceConfig) -> Problems:
    """Compare the ledger with the bronze table and its quarantine."""
    layout = Layout(lake.warehouse, source.name)
    entries = Ledger(spark, layout.ledger).entries()
    problems = Problems()
    now = dt.datetime.now(dt.timezone.utc)
    timeout = dt.timedelta(minutes=source.claim_timeout_minutes)
    problems.orphaned_claims = sorted(u for u, e in entries.items() if is_stale(e, now, timeout))
    if tables.schema_or_none(spark, layout.bronze) is None:
        problems.missing_rows = sorted(u for u, e in entries.items() if e.status == COMMITTED and e.records)
        return problems
    by_file, quarantined = _counts(spark, layout.bronze), _counts(spark, layout.quarantine)
    for table in (layout.bronze, layout.quarantine):
        # copies within one batch (rows of other batches are unknown_batch_rows)
        for uri, extra in tables.duplicate_keys(spark, table, [*ROW_KEY, BATCH_ID], SOURCE_FILE).items():
            problems.duplicate_rows[uri] = problems.duplicate_rows.get(uri, 0) + extra
    for uri, e in entries.items():
        batches, bad = by_file.get(uri, {}), quarantined.get(uri, {})
        if e.status == COMMITTED:
            if batches.get(e.batch_id, 0) != (e.records or 0) or \
                    (e.malformed is not None and bad.get(e.batch_id, 0) != e.malformed):
                problems.missing_rows.append(uri)
            others = sum(n for b, n in {**batches, **bad}.items() if b != e.batch_id)
            if others:
                problems.unknown_batch_rows[uri] = others
    for uri, batches in by_file.items():
        if uri not in entries:
            problems.unknown_files[uri] = sum(batches.values())
    problems.missing_rows.sort()
    return problems


def _counts(spark, uri: str) -> dict[str, dict[str, int]]:
    """{source file: {batch id: rows}} of a bronze or quarantine table."""
    out: dict[str, dict[str, int]] = {}
    if tables.schema_or_none(spark, uri) is not None:
        for r in tables.read(spark, uri).groupBy(SOURCE_FILE, BATCH_ID).count().collect():
            out.setdefault(r[SOURCE_FILE], {})[r[BATCH_ID]] = r["count"]
    return out


def repair(spark, lake: LakeConfig, source: SourceConfig, log=print) -> Problems:
    """Fix what validate finds; idempotent. Returns what was found before repairing."""
    layout = Layout(lake.warehouse, source.name)
    found = problems = validate(spark, lake, source)
    if found.duplicate_rows:
        scope = f"t.{SOURCE_FILE} IN ({', '.join(map(tables.sql_string, found.duplicate_rows))})"
        for table in (layout.bronze, layout.quarantine):
            if tables.schema_or_none(spark, table) is not None:
                tables.retry_conflicts(lambda: tables.dedupe(spark, table, keys=[*ROW_KEY, BATCH_ID],
                                                                  scope=scope))
        log(f"removed {sum(found.duplicate_rows.values())} duplicate row(s) of {len(found.duplicate_rows)} file(s)")
        problems = validate(spark, lake, source)
    ledger = Ledger(spark, layout.ledger)
    entries = ledger.entries()
    if problems.orphaned_claims:
        released = ledger.release_stale(dt.timedelta(minutes=source.claim_timeout_minutes))
        log(f"released {len(released)} orphaned claim(s)")
    for uri in problems.unknown_batch_rows:
        keep = entries[uri].batch_id
        for table in (layout.bronze, layout.quarantine):
            if tables.schema_or_none(spark, table) is not None:
                tables.retry_conflicts(lambda: spark.sql(
                    f"DELETE FROM {tables.ref(table)} WHERE {SOURCE_FILE} = {tables.sql_string(uri)} "
                    f"AND {BATCH_ID} <> {tables.sql_string(keep)}"))
        log(f"deleted {problems.unknown_batch_rows[uri]} row(s) of stale batches for {uri}")
    if problems.unknown_files:
        _register_unknown_files(spark, lake, source, layout, ledger, problems.unknown_files, log)
    to_reload = set(problems.missing_rows) | set(problems.orphaned_claims) | set(problems.unknown_files)
    if to_reload:
        entries = ledger.entries()
        mismatched = {u: entries[u] for u in problems.missing_rows if u in entries}
        for batch in {e.batch_id for e in mismatched.values()}:
            ledger.finish(batch, {u: {"status": RELEASED, "error": "released by repair: rows did not match"}
                                  for u, e in mismatched.items() if e.batch_id == batch})
        days = sorted({entries[u].landing_date for u in to_reload if u in entries})
        result = ingest(spark, lake, source, days, log=log)
        log(f"re-ingested {result.files} file(s) over {len(days)} day(s)")
    return found


def rebuild_ledger(spark, lake: LakeConfig, source: SourceConfig, log=print) -> int:
    """Move the source's ledger aside (kept, for inspection) and rebuild it from bronze's lineage:
    one committed entry per file whose rows bronze or its quarantine hold (with the version in the
    landing, else in archive_to). Files without rows load on the next run. Returns the number of entries rebuilt."""
    layout = Layout(lake.warehouse, source.name)
    aside = f"{layout.ledger}.replaced-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    old = _files_under(layout.ledger)
    for f in old:
        storage.write_bytes(aside + f.uri[len(layout.ledger):], storage.read_bytes(f.uri))
        storage.delete(f.uri)
    listed = {f.uri: (f, day) for f, day in list_landing(lake, source)}
    if source.clean_source == "move":  # (landings room) archived files count as the landing files they were
        listed = {**_archived(lake, source), **listed}
    entries = lineage_entries(spark, layout, source, listed)
    Ledger(spark, layout.ledger).rebuild(entries)
    log(f"moved the old ledger ({len(old)} file(s)) to {aside}; rebuilt {len(entries)} entr(ies) from bronze's "
        f"lineage (files without rows in bronze load on the next run)")
    return len(entries)


def _archived(lake: LakeConfig, source: SourceConfig) -> dict[str, tuple[FileInfo, str]]:
    """(landings room) The files clean_source moved to archive_to, by the landing URI they had."""
    from lake_assets.core.archive import archived_listing

    try:
        return {f.uri: (f, day) for f, day in archived_listing(lake.landing, source, None, {})[0]}
    except storage.StorageError:  # no archive folder yet: nothing was moved
        return {}


def _files_under(uri: str) -> list[FileInfo]:
    try:
        return list(storage.list_files(uri))
    except storage.StorageError:  # a local folder that does not exist
        return []


def _register_unknown_files(spark, lake, source, layout: Layout, ledger: Ledger, files: dict[str, int], log) -> None:
    """Rows from files the ledger lacks: a file still in the landing is registered as released (so
    its next load replaces its rows); a file gone from the landing is adopted as committed (its rows
    are the only copy left)."""
    rows = (tables.read(spark, layout.bronze).where(F.col(SOURCE_FILE).isin(list(files)))
            .groupBy(SOURCE_FILE, LANDING_DATE, BATCH_ID).count().collect())
    days = {r[LANDING_DATE] for r in rows}
    listed = {f.uri: (f, day) for f, day in list_landing(lake, source, days)}
    batch = f"repair-{uuid.uuid4()}"
    present = [u for u in files if u in listed]
    gone = {r[SOURCE_FILE]: r for r in rows if r[SOURCE_FILE] not in listed}
    ledger.claim(batch, this_owner(), [(listed[u][0], listed[u][1], None) for u in present]
                 + [(FileInfo(u, 0, "gone", dt.datetime.now(dt.timezone.utc)), r[LANDING_DATE], None)
                    for u, r in gone.items()])
    outcomes = {u: {"status": RELEASED, "error": "registered by repair"} for u in present}
    ledger.finish(batch, outcomes)
    for uri, r in gone.items():
        ledger.adopt(batch, uri, r[BATCH_ID], files[uri])
    log(f"registered {len(present)} unknown file(s) for reload; adopted {len(gone)} file(s) no longer in the landing")


def reset(spark, lake: LakeConfig, source: SourceConfig, confirm: str | None, log=print) -> dict:
    """Empty the bronze table, its quarantine, the ledger and the schema log of one source.

    Delta history stays (time travel to the version before the reset restores the data). The
    order (tables, then ledger, then schema log) keeps a crash half-way safe: a ledger that still
    says committed only makes validate report missing rows, never duplicates."""
    if confirm != source.name:
        raise OperatorError(f"reset empties bronze/{source.name}; confirm with --confirm {source.name}")
    layout = Layout(lake.warehouse, source.name)
    before = {uri: table_version(uri) for uri in (layout.bronze, layout.quarantine)}
    for uri in (layout.bronze, layout.quarantine, layout.ledger):
        if tables.schema_or_none(spark, uri) is not None:
            tables.retry_conflicts(lambda: spark.sql(f"DELETE FROM {tables.ref(uri)}"))
    versions = SchemaLog(layout.schemas).clear()
    log(f"reset {source.name}: emptied {layout.bronze} (was version {before[layout.bronze]}; time travel "
        f"with versionAsOf={before[layout.bronze]} reads the old rows), its quarantine and ledger, and "
        f"{versions} schema version(s). The next run re-ingests every landed file.")
    return {"bronze_version_before": before[layout.bronze], "schema_versions_cleared": versions}
