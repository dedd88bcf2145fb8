"""Gold: SQL over silver tables, named in the SQL by their config names.

Partitioned (the default): gold partition D is the SQL over the silver rows landed on D, stored with
`_partition_date` = D and replaced atomically (one replaceWhere commit per day). Each day is computed
and written on its own because temp views resolve when a query runs, not when it is defined.
`partitioned: false`: the SQL over the whole silver tables replaces the table in one overwrite commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import functions as F
from pyspark.sql import types as T

from lake_assets.config import LakeConfig, GoldConfig
from lake_assets.core import tables
from lake_assets.core.layout import GOLD_PARTITION, SILVER_PARTITION, gold_uri, silver_uri
from lake_assets.errors import LakeError


class GoldError(LakeError, RuntimeError):
    """A gold run stopped; the message says why."""


@dataclass
class GoldResult:
    name: str
    days: list[str] | None                 # None: full rebuild
    rows_written: dict[str, int] = field(default_factory=dict)  # per day ("*" for a full rebuild)
    table_rows: int = 0
    table_version: int | None = None
    schema: T.StructType | None = None


def run(spark, lake: LakeConfig, cfg: GoldConfig, days: list[str] | None = None,
        log: Callable[[str], None] = print) -> GoldResult:
    """Recompute gold/<cfg.name> for `days` (ignored and rebuilt whole when cfg.partitioned is false)."""
    uri = gold_uri(lake.warehouse, cfg.name)
    sources = {}
    for name in cfg.source:
        source_uri = silver_uri(lake.warehouse, name)
        if tables.schema_or_none(spark, source_uri) is None:
            raise GoldError(f"gold {cfg.name!r}: silver/{name} has no table yet at {source_uri}; "
                            f"materialize silver/{name} first")
        sources[name] = tables.read(spark, source_uri)

    if not cfg.partitioned:
        result = GoldResult(cfg.name, None)
        for name, df in sources.items():
            df.createOrReplaceTempView(name)
        # Sail's local cluster fails a Delta write of a global aggregate ("ExtendedAggregateUdf: no
        # UDF found for sum") unless a shuffle comes first; one shuffle costs little in a rebuild.
        out = _query(spark, cfg).repartition(int(spark.conf.get("spark.sql.shuffle.partitions", "8")))
        result.rows_written["*"] = out.count()
        tables.retry_conflicts(lambda: out.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
                               .option("userMetadata", f"gold {cfg.name} rebuild").save(uri))
    else:
        if days is None:
            raise GoldError(f"gold {cfg.name!r} is partitioned: give the days to recompute")
        result = GoldResult(cfg.name, sorted(set(days)))
        for day in result.days:
            for name, df in sources.items():
                df.where(F.col(SILVER_PARTITION) == day).createOrReplaceTempView(name)
            out = _query(spark, cfg).withColumn(GOLD_PARTITION, F.lit(day))
            result.rows_written[day] = out.count()
            tables.retry_conflicts(lambda: tables.replace_partitions(spark, out, uri, GOLD_PARTITION, [day],
                                                                     metadata=f"gold {cfg.name} {day}"))

    from lake_assets.core.delta_meta import table_version

    table = tables.read(spark, uri)
    result.table_rows = table.count()
    result.schema = table.schema
    result.table_version = table_version(uri)
    log(f"gold {cfg.name}: {sum(result.rows_written.values())} row(s) written "
        f"({'rebuild' if result.days is None else f'{len(result.days)} day(s)'}); table has {result.table_rows}")
    return result


def _query(spark, cfg: GoldConfig):
    try:
        out = spark.sql(cfg.sql)
        out.columns  # analyse now, so a bad query fails with the gold name in the message
        return out
    except Exception as exc:
        raise GoldError(f"gold {cfg.name!r}: the SQL failed over {cfg.source}: "
                        f"{str(exc).splitlines()[0][:500]}") from None
