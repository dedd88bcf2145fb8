"""The ingestion ledger: one row per landing file of a source, in a Delta table beside the data.

A run claims files with a compare-and-swap MERGE (concurrent MERGEs conflict and retry, and a row
is only taken from the claim the run last saw), writes the data, then marks the files committed.
A claim whose owner died (same host, process gone) or that is older than the claim timeout is
stale and may be taken over; the next write of such a file replaces its rows instead of appending.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.core import tables
from lake_assets.errors import LakeError

SCHEMA = T.StructType([
    T.StructField("uri", T.StringType()), T.StructField("etag", T.StringType()),
    T.StructField("size", T.LongType()), T.StructField("landing_date", T.StringType()),
    T.StructField("status", T.StringType()), T.StructField("batch_id", T.StringType()),
    T.StructField("owner", T.StringType()), T.StructField("claimed_at", T.TimestampType()),
    T.StructField("committed_at", T.TimestampType()), T.StructField("records", T.LongType()),
    T.StructField("malformed", T.LongType()), T.StructField("rescued", T.LongType()),
    T.StructField("error", T.StringType()), T.StructField("attempts", T.IntegerType()),
])
PROCESSING, COMMITTED, FAILED, RELEASED = "processing", "committed", "failed", "released"
SKIPPED = "skipped"   # a corrupt file left out by on_corrupt: skip (not retried until it changes)


@dataclass(frozen=True)
class Entry:
    uri: str
    etag: str
    size: int
    landing_date: str
    status: str
    batch_id: str | None
    owner: str | None
    claimed_at: dt.datetime | None
    committed_at: dt.datetime | None = None
    records: int | None = None
    malformed: int | None = None
    rescued: int | None = None
    error: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    """How a claimed file's batch ended: what `finish` writes into its row."""
    status: str
    records: int | None = None
    malformed: int | None = None
    rescued: int | None = None
    error: str | None = None


def this_owner(run_id: str | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id or '-'}"


def is_stale(entry: Entry, now: dt.datetime, timeout: dt.timedelta) -> bool:
    """A processing claim nobody will finish: its process is gone, or it timed out."""
    if entry.status != PROCESSING:
        return False
    if entry.claimed_at is None or now - entry.claimed_at > timeout:
        return True
    host, _, rest = (entry.owner or "").partition(":")
    pid = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


class LedgerUnreadable(LakeError, RuntimeError):
    """The ledger table exists but cannot be read (a corrupt log, a foreign table)."""

    def __init__(self, uri: str, cause: str, source: str = "<source>"):
        self.uri, self.cause = uri, cause
        super().__init__(f"the ledger {uri} cannot be read: {cause}. If the storage was unreachable, rerun; if "
                         f"the ledger is corrupt, run `lake repair {source} --rebuild-ledger`: it moves the ledger "
                         f"aside and rebuilds it from bronze's lineage.")

    @classmethod
    def of(cls, uri: str, exc: Exception, source: str = "<source>") -> "LedgerUnreadable":
        return cls(uri, (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300], source)


class Ledger:
    """A source's ledger, partitioned by landing date (ledgers made before that are not, and read the
    same). With `days`, every read and MERGE is limited to those landing dates, so a run's cost does
    not grow with history; a run gives them only when a file's landing date cannot change (dated keys)."""

    def __init__(self, spark, uri: str, days: set[str] | None = None):
        self.spark, self.uri, self.days = spark, uri, days

    def entries(self, uris: Collection[str] | None = None) -> dict[str, Entry]:
        """The entries of the ledger's days, and of `uris` when given (a semi-join in the engine)."""
        try:
            if tables.schema_or_none(self.spark, self.uri) is None:
                return {}
            rows = tables.read(self.spark, self.uri)
            if self.days is not None:
                rows = rows.where(F.col("landing_date").isin(sorted(self.days)))
            if uris is not None:
                if not uris:
                    return {}
                wanted = self.spark.createDataFrame([(u,) for u in set(uris)], "uri string")
                rows = rows.join(wanted, "uri", "left_semi")
            return {r["uri"]: Entry(**{f.name: as_utc(r[f.name]) for f in SCHEMA.fields}) for r in rows.collect()}
        except Exception as exc:  # noqa: BLE001 - any engine error reading it means the same
            raise LedgerUnreadable.of(self.uri, exc) from exc

    def _scope(self) -> str:
        """The MERGE condition limiting the target to the ledger's days (the engine prunes by it)."""
        if self.days is None:
            return ""
        return f" AND t.landing_date IN ({', '.join(map(tables.sql_string, sorted(self.days)))})"

    def rebuild(self, found: list[Entry]) -> None:
        """Insert entries for files the ledger lacks (rebuilt from bronze's lineage); known files stay."""
        if not found:
            return
        self._ensure()
        columns = [f.name for f in SCHEMA.fields]
        src = self.spark.createDataFrame([tuple(getattr(e, c) for c in columns) for e in found], SCHEMA)
        self._merge(src, f"ON t.uri = s.uri{self._scope()} WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) "
                         f"VALUES ({', '.join('s.' + c for c in columns)})")

    def _ensure(self) -> None:
        if tables.schema_or_none(self.spark, self.uri) is None:
            tables.retry_conflicts(lambda: tables.add_columns(self.spark, self.uri, SCHEMA, "landing_date"))

    def claim(self, batch_id: str, owner: str, wanted: list[tuple[object, str, Entry | None]]) -> set[str]:
        """Claim files (FileInfo, landing date, the entry seen when planning); return the URIs won.

        A row is taken only if it still holds the claim seen when planning, so a file another run
        claimed in between stays with that run."""
        if not wanted:
            return set()
        self._ensure()
        now = _now()
        rows = [(f.uri, f.etag, f.size, day, PROCESSING, batch_id, owner, now, None, None, None, None, None,
                 (seen.attempts if seen else 0) + 1, seen.batch_id if seen else None,
                 seen.status if seen else None) for f, day, seen in wanted]
        src = self.spark.createDataFrame(rows, T.StructType(SCHEMA.fields + [
            T.StructField("seen_batch", T.StringType()), T.StructField("seen_status", T.StringType())]))
        columns = [f.name for f in SCHEMA.fields]
        self._merge(src, f"ON t.uri = s.uri{self._scope()} WHEN MATCHED AND t.batch_id <=> s.seen_batch "
                         f"AND t.status <=> s.seen_status THEN UPDATE SET {', '.join(f'{c} = s.{c}' for c in columns)} "
                         f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) VALUES ({', '.join('s.' + c for c in columns)})")
        return {u for u, e in self.entries([f.uri for f, _, _ in wanted]).items() if e.batch_id == batch_id}

    def finish(self, batch_id: str, outcomes: Mapping[str, Outcome | dict]) -> None:
        """Record each claimed file's outcome ({uri: Outcome}; a dict of Outcome's fields also does)."""
        if not outcomes:
            return
        now = _now()
        done = {uri: o if isinstance(o, Outcome) else Outcome(**o) for uri, o in outcomes.items()}
        rows = [(uri, o.status, o.records, o.malformed, o.rescued, o.error, now if o.status == COMMITTED else None)
                for uri, o in done.items()]
        src = self.spark.createDataFrame(rows, "uri string, status string, records bigint, malformed bigint, "
                                               "rescued bigint, error string, committed_at timestamp")
        self._merge(src, f"ON t.uri = s.uri AND t.batch_id = {tables.sql_string(batch_id)}{self._scope()} "
                         f"WHEN MATCHED THEN UPDATE SET status = s.status, records = s.records, "
                         f"malformed = s.malformed, rescued = s.rescued, error = s.error, committed_at = s.committed_at")

    def _merge(self, src, clauses: str) -> None:
        """MERGE `src` (as `s`) into the ledger (as `t`), retrying commit conflicts."""
        view = f"lake_ledger_{uuid.uuid4().hex}"
        src.createOrReplaceTempView(view)
        try:
            tables.retry_conflicts(lambda: self.spark.sql(f"MERGE INTO {tables.ref(self.uri)} t USING {view} s {clauses}"))
        finally:
            self.spark.catalog.dropTempView(view)

    def adopt(self, claim_batch: str, uri: str, data_batch: str, records: int) -> None:
        """Record rows already in the table as the committed load of `uri` (repair)."""
        tables.retry_conflicts(lambda: self.spark.sql(
            f"UPDATE {tables.ref(self.uri)} SET status = '{COMMITTED}', batch_id = {tables.sql_string(data_batch)}, "
            f"records = {int(records)}, error = 'adopted by repair: file no longer in the landing' "
            f"WHERE uri = {tables.sql_string(uri)} AND batch_id = {tables.sql_string(claim_batch)}"))

    def release_stale(self, timeout: dt.timedelta) -> list[Entry]:
        """Mark dead claims released (repair); their files are replaced, not appended, next time."""
        stale = [e for e in self.entries().values() if is_stale(e, _now(), timeout)]
        for batch in {e.batch_id for e in stale}:
            self.finish(batch, {e.uri: Outcome(RELEASED, error="claim released: its run died")
                                for e in stale if e.batch_id == batch})
        return stale


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value):
    # Spark returns naive datetimes in the session time zone, which engine.py sets to UTC.
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value
