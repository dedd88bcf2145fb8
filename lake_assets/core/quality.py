"""Data-quality measures over a source's bronze tables: rescued-data rate, malformed rate and
schema drift. Plain numbers; Dagster turns them into asset check results."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.core import tables
from lake_assets.core.bronze import PARTITION_COLUMN, Layout
from lake_assets.core.schema import SchemaDiff, diff
from lake_assets.core.schema_log import SchemaLog


@dataclass(frozen=True)
class Rate:
    rows: int
    hits: int
    top_paths: list[tuple[str, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.hits / self.rows if self.rows else 0.0


def _in_days(df, days: list[str] | None):
    return df.where(F.col(PARTITION_COLUMN).isin(days)) if days else df


def rescued_rate(spark, layout: Layout, rescued_column: str, days: list[str] | None, top: int = 10) -> Rate:
    """Share of rows with rescued data, and the field paths rescued most often (array indexes folded)."""
    if tables.schema_or_none(spark, layout.bronze) is None:
        return Rate(0, 0)
    df = _in_days(tables.read(spark, layout.bronze), days)
    totals = df.agg(F.count("*").alias("rows"), F.count(rescued_column).alias("hits")).collect()[0]
    paths = (df.where(F.col(rescued_column).isNotNull())
             .select(F.explode(F.map_keys(F.from_json(rescued_column, T.MapType(T.StringType(), T.StringType()))))
                     .alias("path"))
             .where("path <> '_file_path'").groupBy("path").count().collect())
    folded: dict[str, int] = {}
    for r in paths:
        key = re.sub(r"\[\d+\]", "[]", r["path"])
        folded[key] = folded.get(key, 0) + r["count"]
    return Rate(totals["rows"], totals["hits"], sorted(folded.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def malformed_rate(spark, layout: Layout, days: list[str] | None) -> Rate:
    """Malformed lines against all lines (rows plus malformed)."""
    rows = bad = 0
    if tables.schema_or_none(spark, layout.bronze) is not None:
        rows = _in_days(tables.read(spark, layout.bronze), days).count()
    if tables.schema_or_none(spark, layout.quarantine) is not None:
        bad = _in_days(tables.read(spark, layout.quarantine), days).count()
    return Rate(rows + bad, bad)


@dataclass(frozen=True)
class Drift:
    accepted_version: int | None
    current_version: int | None
    diff: SchemaDiff

    @property
    def breaking(self) -> bool:
        return bool(self.diff.removed or self.diff.retyped)


def schema_drift(layout: Layout) -> Drift:
    """Current schema against the accepted one (`lake schema accept`; else the first version)."""
    log = SchemaLog(layout.schemas)
    current, accepted = log.current(), log.accepted()
    if current is None:
        return Drift(None, None, SchemaDiff())
    baseline = accepted or log.versions()[0]
    pending = log.pending()
    latest = pending.schema if pending else current.schema
    return Drift(baseline.version, current.version, diff(baseline.schema, latest))
