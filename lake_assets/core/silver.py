"""Silver: the bronze rows of some days -> a typed, flattened table, in one of three modes.

- append: the days' rows, each day's partition replaced atomically (a rerun gives the same rows).
- upsert: one row per key; the batch is deduplicated (latest sequence_by wins, ties broken by
  _source_file, _line desc), then MERGE WITH SCHEMA EVOLUTION updates a row only when the incoming
  record has a strictly greater sequence_by, so late, re-sent or replayed records change nothing.
- scd2: history rows with valid_from / valid_to / is_current. For every key in the batch the history
  is recomputed from the stored versions plus the batch's records in sequence order, and one MERGE
  applies the difference: out-of-order arrivals land in the right place and replays change nothing.

Expectations are evaluated over the selected rows before anything is written: counts per
expectation, `fail` raises, `drop` removes rows, `quarantine` moves them to silver/<name>__quarantine.
A NULL expectation result counts as a violation. Expectations and delete_when are SQL over the
*selected* columns (so `select` must bring any column they use).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.config import LakeConfig, SilverConfig
from lake_assets.core import tables
from lake_assets.core.layout import (AUDIT_COLUMNS, BRONZE_PARTITION, LINE, SILVER_PARTITION, SOURCE_FILE, Layout,
                                    silver_quarantine_uri, silver_uri)
from lake_assets.core.tables import quoted
from lake_assets.errors import LakeError

LINEAGE = (SILVER_PARTITION, SOURCE_FILE, LINE)  # kept on every silver row; also the tie-break
FAILED_COLUMN = "_failed_expectations"


class SilverError(LakeError, RuntimeError):
    """A silver run stopped; the message says why."""


class ExpectationFailed(SilverError):
    """An expectation with on_violation: fail was violated; nothing was written."""

    def __init__(self, silver: str, failures: dict[str, int], rows: int):
        self.failures = failures
        listed = ", ".join(f"{name!r} ({count} of {rows} rows)" for name, count in failures.items())
        super().__init__(f"silver {silver!r}: expectation(s) with on_violation fail violated: {listed}. "
                         f"Nothing was written.")

    def facts(self) -> dict:
        return {"failed": self.failures}


@dataclass
class SilverResult:
    name: str
    mode: str
    days: list[str]
    rows_read: int = 0          # bronze rows of the days
    rows_dropped: int = 0
    rows_quarantined: int = 0
    rows_written: int = 0       # rows handed to the table write (after expectations and dedup)
    expectations: dict[str, dict] = field(default_factory=dict)  # name -> passed, failed, on_violation
    table_rows: int = 0
    day_rows: dict[str, int] = field(default_factory=dict)  # rows the table holds per landing day of the run
    current_rows: int | None = None  # scd2 only
    table_version: int | None = None
    schema: T.StructType | None = None


def run(spark, lake: LakeConfig, cfg: SilverConfig, days: list[str] | None = None,
        log: Callable[[str], None] = print) -> SilverResult:
    """Process the bronze rows landed on `days` (YYYY-MM-DD; None = every day) into silver/<cfg.name>."""
    if cfg.delete_when and cfg.mode != "scd2":
        raise SilverError(f"silver {cfg.name!r}: delete_when is supported with mode scd2 only (mode is {cfg.mode})")
    bronze_uri = Layout(lake.warehouse, cfg.source).bronze
    if tables.schema_or_none(spark, bronze_uri) is None:
        raise SilverError(f"silver {cfg.name!r}: bronze/{cfg.source} has no table yet at {bronze_uri}; "
                          f"materialize bronze/{cfg.source} first")
    rows = tables.read(spark, bronze_uri)
    if days is None:
        days = sorted(r[0] for r in rows.select(BRONZE_PARTITION).distinct().collect())
    days = sorted(set(days))
    result = SilverResult(cfg.name, cfg.mode, days)
    batch = _project(rows.where(F.col(BRONZE_PARTITION).isin(days)), cfg, bronze_uri)

    kept, quarantined = _apply_expectations(batch, cfg, result)  # raises before any write on `fail`
    uri = silver_uri(lake.warehouse, cfg.name)
    _write(spark, lake, cfg, kept, quarantined, uri, result)
    _table_facts(spark, uri, cfg, result)
    log(f"silver {cfg.name} ({cfg.mode}) {len(days)} day(s): {result.rows_read} bronze row(s) read, "
        f"{result.rows_written} written, {result.rows_dropped} dropped, {result.rows_quarantined} quarantined; "
        f"table has {result.table_rows} row(s)")
    return result


def _write(spark, lake: LakeConfig, cfg: SilverConfig, kept: DataFrame, quarantined: DataFrame, uri: str,
           result: SilverResult) -> None:
    days = result.days
    metadata = f"silver {cfg.name} {days[0]}..{days[-1]}" if days else None
    quarantine = silver_quarantine_uri(lake.warehouse, cfg.name)
    if result.rows_quarantined or tables.schema_or_none(spark, quarantine) is not None:
        # Replacing the days' quarantine rows keeps reruns idempotent (and clears rows that now pass).
        tables.retry_conflicts(lambda: tables.replace_partitions(spark, quarantined, quarantine, SILVER_PARTITION,
                                                                 days, metadata=metadata))
    if cfg.mode == "append":
        result.rows_written = result.rows_read - result.rows_dropped - result.rows_quarantined
        tables.retry_conflicts(lambda: tables.replace_partitions(spark, kept, uri, SILVER_PARTITION, days,
                                                                 metadata=metadata))
    elif cfg.mode == "upsert":
        _upsert(spark, kept, uri, cfg, result)
    else:
        _scd2(spark, kept, uri, cfg, result, lake)


def _table_facts(spark, uri: str, cfg: SilverConfig, result: SilverResult) -> None:
    from lake_assets.core.delta_meta import table_version

    table = tables.read(spark, uri)
    result.table_rows = table.count()
    counted = {r[0]: r[1] for r in table.where(F.col(SILVER_PARTITION).isin(result.days))
               .groupBy(SILVER_PARTITION).count().collect()}
    result.day_rows = {day: counted.get(day, 0) for day in result.days}
    if cfg.mode == "scd2":
        result.current_rows = table.where(F.col(quoted(cfg.is_current_column))).count()
    result.schema = table.schema
    result.table_version = table_version(uri)


def _project(rows: DataFrame, cfg: SilverConfig, bronze_uri: str) -> DataFrame:
    """cfg.select over the bronze rows, plus the lineage columns (unless `*` already brought them)."""
    lineage = [F.col(c).alias(f"__lineage_{i}") for i, c in enumerate(LINEAGE)]
    try:
        projected = rows.select(*[F.expr(e) for e in cfg.select], *lineage)
        columns = projected.columns  # forces analysis, so a bad expression fails here with a clear message
    except Exception as exc:
        raise SilverError(f"silver {cfg.name!r}: select {cfg.select} does not fit bronze/{cfg.source} "
                          f"({bronze_uri}): {str(exc).splitlines()[0][:500]}") from None
    for i, c in enumerate(LINEAGE):
        projected = (projected.drop(f"__lineage_{i}") if c in columns
                     else projected.withColumnRenamed(f"__lineage_{i}", c))
    missing = [c for c in [*cfg.keys, *([cfg.sequence_by] if cfg.sequence_by else [])] if c not in projected.columns]
    if missing:
        raise SilverError(f"silver {cfg.name!r}: keys/sequence_by {missing} are not among the selected columns "
                          f"{projected.columns}")
    return projected


def _apply_expectations(batch: DataFrame, cfg: SilverConfig, result: SilverResult) -> tuple[DataFrame, DataFrame]:
    """Count every expectation in one pass; raise on `fail`; return (kept rows, quarantined rows)."""
    names = list(cfg.expectations)
    ok = {n: f"__ok_{i}" for i, n in enumerate(names)}
    flagged = batch.select("*", *[F.coalesce(F.expr(cfg.expectations[n].expr), F.lit(False)).alias(ok[n])
                                  for n in names])

    def any_failed(action: str):
        cols = [~F.col(ok[n]) for n in names if cfg.expectations[n].on_violation == action]
        out = F.lit(False)
        for c in cols:
            out = out | c
        return out

    quarantine, drop = any_failed("quarantine"), any_failed("drop")
    counts = flagged.agg(F.count(F.lit(1)).alias("rows"),
                         F.sum(F.when(quarantine, 1).otherwise(0)).alias("quarantined"),
                         F.sum(F.when(drop & ~quarantine, 1).otherwise(0)).alias("dropped"),
                         *[F.sum(F.when(~F.col(ok[n]), 1).otherwise(0)).alias(ok[n]) for n in names]).first()
    result.rows_read = counts["rows"]
    result.rows_quarantined = counts["quarantined"] or 0
    result.rows_dropped = counts["dropped"] or 0
    for n in names:
        failed = counts[ok[n]] or 0
        result.expectations[n] = {"passed": result.rows_read - failed, "failed": failed,
                                  "on_violation": cfg.expectations[n].on_violation}
    failures = {n: e["failed"] for n, e in result.expectations.items() if e["on_violation"] == "fail" and e["failed"]}
    if failures:
        raise ExpectationFailed(cfg.name, failures, result.rows_read)

    # A quarantined row lists every expectation it failed; a row failing both drop and quarantine is kept there.
    # F.filter, not array_compact/split: on Sail their arrays are written in a form a later replaceWhere
    # on the table cannot union with ("List(Utf8, field: 'element')").
    failed_names = F.filter(F.array(*[F.when(~F.col(ok[n]), F.lit(n)) for n in names]), lambda c: c.isNotNull()) \
        if names else F.array().cast("array<string>")
    quarantined = flagged.where(quarantine).select(*map(quoted, batch.columns), failed_names.alias(FAILED_COLUMN))
    kept = flagged.where(~quarantine & ~drop).select(*map(quoted, batch.columns))
    return kept, quarantined


def _order(cfg: SilverConfig, prefix: str = "") -> list:
    """Latest first: sequence_by, then the deterministic tie-break (_source_file, _line)."""
    return [F.col(prefix + quoted(cfg.sequence_by)).desc_nulls_last(), F.col(prefix + SOURCE_FILE).desc_nulls_last(),
            F.col(prefix + LINE).desc_nulls_last()]


def _on(keys: list[str], extra: list[str] = ()) -> str:
    # Null-safe, so a NULL key matches itself and a rerun does not insert it again.
    return " AND ".join(f"t.{quoted(k)} <=> s.{quoted(k)}" for k in [*keys, *extra])


def _merge(spark, source: DataFrame, statement: str) -> None:
    """Run a MERGE with `source` as view s (a fresh name per run), retrying commit conflicts."""
    view = f"lake_silver_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    try:
        tables.retry_conflicts(lambda: spark.sql(statement.format(source=view)).collect())
    finally:
        spark.catalog.dropTempView(view)


def _upsert(spark, kept: DataFrame, uri: str, cfg: SilverConfig, result: SilverResult) -> None:
    latest = (kept.withColumn("__rn", F.row_number().over(Window.partitionBy(*[quoted(k) for k in cfg.keys])
                                                            .orderBy(*_order(cfg))))
              .where("__rn = 1").drop("__rn"))
    result.rows_written = latest.count()
    if tables.schema_or_none(spark, uri) is None:
        tables.add_columns(spark, uri, latest.schema, partition_by=SILVER_PARTITION)
    seq = quoted(cfg.sequence_by)
    # Only a strictly newer sequence_by updates: replays, re-sent duplicates (even from a later file) and
    # late records change nothing, so a stored row never moves to another landing date without a real change.
    newer = f"(t.{seq} IS NULL AND s.{seq} IS NOT NULL) OR s.{seq} > t.{seq}"
    _merge(spark, latest, f"MERGE WITH SCHEMA EVOLUTION INTO {tables.ref(uri)} t USING {{source}} s "
                          f"ON {_on(cfg.keys)} WHEN MATCHED AND ({newer}) THEN UPDATE SET * "
                          f"WHEN NOT MATCHED THEN INSERT *")


def _tracked(cfg: SilverConfig, columns: list[str], lake: LakeConfig) -> list[str]:
    # Bronze bookkeeping (which batch, when ingested, rescued blob) never makes a new version by default.
    source = lake.source(cfg.source)
    untracked = {*cfg.keys, cfg.sequence_by, *LINEAGE, *AUDIT_COLUMNS, source.rescued_data_column,
                 *(cfg.track_history_except_columns or [])}
    tracked = cfg.track_history_columns or [c for c in columns if c not in untracked]
    unknown = [c for c in tracked if c not in columns]
    if unknown:
        raise SilverError(f"silver {cfg.name!r}: track_history_columns {unknown} are not among the selected "
                          f"columns {columns}")
    return tracked


def _scd2(spark, kept: DataFrame, uri: str, cfg: SilverConfig, result: SilverResult, lake: LakeConfig) -> None:
    vf, vt, cur = cfg.valid_from_column, cfg.valid_to_column, cfg.is_current_column
    clash = [c for c in (vf, vt, cur) if c in kept.columns]
    if clash:
        raise SilverError(f"silver {cfg.name!r}: selected columns {clash} clash with the scd2 validity columns; "
                          f"rename them or set valid_from_column / valid_to_column / is_current_column")
    tracked = _tracked(cfg, kept.columns, lake)
    deleted = F.coalesce(F.expr(cfg.delete_when), F.lit(False)) if cfg.delete_when else F.lit(False)
    events = kept.withColumn("__del", deleted).withColumn("__src", F.lit(1))
    result.rows_written = kept.count()

    if tables.schema_or_none(spark, uri) is None:
        seq_type = kept.schema[cfg.sequence_by].dataType
        tables.add_columns(spark, uri, T.StructType([*kept.schema.fields, T.StructField(vf, seq_type),
                                                     T.StructField(vt, seq_type), T.StructField(cur, T.BooleanType())]),
                           partition_by=SILVER_PARTITION)
    # Only the keys this batch touches are recomputed.
    touched = events.select(*[quoted(k) for k in cfg.keys]).distinct().alias("b")
    stored = tables.read(spark, uri).alias("t").join(touched, _key_match(cfg.keys, "t", "b"), "left_semi")
    history = _history(_events(events, stored, cfg), cfg, tracked)
    _apply_history(spark, uri, stored, history, cfg)


def _events(events: DataFrame, stored: DataFrame, cfg: SilverConfig) -> DataFrame:
    """The batch's events plus the stored history as events, one per (key, sequence)."""
    keys, seq = cfg.keys, cfg.sequence_by
    vf, vt, cur = cfg.valid_from_column, cfg.valid_to_column, cfg.is_current_column
    # Stored history back into events: each version is the record that started it (seq = valid_from),
    # and a closed version with no successor at its valid_to was ended by a delete at that point.
    successor = F.lead(quoted(vf)).over(Window.partitionBy(*[quoted(k) for k in keys])
                                        .orderBy(F.col(quoted(vf)).asc_nulls_first()))
    with_next = stored.withColumn("__next", successor)
    stored_versions = stored.drop(vf, vt, cur).withColumn("__del", F.lit(False)).withColumn("__src", F.lit(0))
    tombstones = (with_next.where(F.col(quoted(vt)).isNotNull() & ~F.col("__next").eqNullSafe(F.col(quoted(vt))))
                  .select(*[quoted(k) for k in keys], F.col(quoted(vt)).alias(seq))
                  .withColumn("__del", F.lit(True)).withColumn("__src", F.lit(0)))
    all_events = (events.unionByName(stored_versions, allowMissingColumns=True)
                  .unionByName(tombstones, allowMissingColumns=True))
    # One event per (key, sequence): what is stored wins (a replay or a re-sent duplicate changes nothing),
    # then, within the batch, the tie-break (_source_file, _line) desc.
    return (all_events.withColumn("__rn", F.row_number().over(
        Window.partitionBy(*[quoted(k) for k in keys], quoted(seq)).orderBy(
            F.col("__src").asc(), F.col(SOURCE_FILE).desc_nulls_last(), F.col(LINE).desc_nulls_last())))
        .where("__rn = 1").drop("__rn"))


def _history(all_events: DataFrame, cfg: SilverConfig, tracked: list[str]) -> DataFrame:
    """The recomputed history rows of the events' keys."""
    seq, vf, vt, cur = cfg.sequence_by, cfg.valid_from_column, cfg.valid_to_column, cfg.is_current_column
    by_key = Window.partitionBy(*[quoted(k) for k in cfg.keys])
    # In sequence order per key, an event matters when it starts a version (first, after a delete, or a
    # tracked column changed) or is a delete that ends a live version.
    in_order = by_key.orderBy(F.col(quoted(seq)).asc_nulls_first(), F.col(SOURCE_FILE).asc_nulls_first(),
                              F.col(LINE).asc_nulls_first())
    prev_del = F.lag("__del").over(in_order)
    changed = F.lit(False)
    for c in tracked:
        changed = changed | ~F.col(quoted(c)).eqNullSafe(F.lag(quoted(c)).over(in_order))
    starts = F.when(F.col("__del"), prev_del.isNotNull() & ~prev_del).otherwise(
        prev_del.isNull() | prev_del | changed)
    kept_events = all_events.withColumn("__keep", starts).where("__keep").drop("__keep")
    ends = F.lead(quoted(seq)).over(by_key.orderBy(F.col(quoted(seq)).asc_nulls_first()))
    return (kept_events.withColumn(vt, ends).where(~F.col("__del"))
            .withColumn(vf, F.col(quoted(seq))).withColumn(cur, F.col(quoted(vt)).isNull())
            .drop("__del", "__src"))


def _apply_history(spark, uri: str, stored: DataFrame, history: DataFrame, cfg: SilverConfig) -> None:
    """One MERGE: versions no longer in the recomputed history are deleted, the rest upserted."""
    keys, vf = cfg.keys, cfg.valid_from_column
    gone = stored.alias("t").join(history.alias("h"), _key_match(keys + [vf], "t", "h"), "left_anti") \
        .select(*[quoted(k) for k in keys], quoted(vf)).withColumn("__op", F.lit("delete"))
    source = history.withColumn("__op", F.lit("upsert")).unionByName(gone, allowMissingColumns=True)
    columns = history.columns
    if set(columns) - set(tables.schema_or_none(spark, uri).fieldNames()):  # new columns first, schema-only commit
        tables.add_columns(spark, uri, history.schema, partition_by=SILVER_PARTITION)
    differs = " OR ".join(f"NOT (t.{quoted(c)} <=> s.{quoted(c)})" for c in columns
                          if not isinstance(history.schema[c].dataType, T.MapType))
    _merge(spark, source, f"MERGE INTO {tables.ref(uri)} t USING {{source}} s ON {_on(keys, [vf])} "
                          f"WHEN MATCHED AND s.__op = 'delete' THEN DELETE "
                          f"WHEN MATCHED AND ({differs}) THEN UPDATE SET "
                          + ", ".join(f"{quoted(c)} = s.{quoted(c)}" for c in columns)
                          + f" WHEN NOT MATCHED AND s.__op = 'upsert' THEN INSERT ({', '.join(map(quoted, columns))}) "
                          f"VALUES ({', '.join('s.' + quoted(c) for c in columns)})")


def _key_match(columns: list[str], left: str, right: str):
    """Null-safe equality of `columns` between the aliased frames `left` and `right`."""
    cond = None
    for c in columns:
        part = F.col(f"{left}.{quoted(c)}").eqNullSafe(F.col(f"{right}.{quoted(c)}"))
        cond = part if cond is None else cond & part
    return cond
