"""Delta table operations used by every layer, addressed by path so they work with any catalog
(the embedded engine's catalog forgets names on restart)."""

from __future__ import annotations

import time

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from lake_assets.errors import is_commit_conflict, is_missing_table


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ref(uri: str) -> str:
    return f"delta.`{uri}`"


def quoted(name: str) -> str:
    """A column name as an identifier in SQL and column references: `a.b` is a column named "a.b",
    not struct access (names come from data)."""
    return "`" + name.replace("`", "``") + "`"


def schema_or_none(spark, uri: str) -> T.StructType | None:
    """The table's schema, or None when no Delta table is there yet."""
    try:
        return spark.read.format("delta").load(uri).schema
    except Exception as exc:  # the engines raise different classes
        if is_missing_table(exc):
            return None
        raise


def read(spark, uri: str) -> DataFrame:
    return spark.read.format("delta").load(uri)


def append(df: DataFrame, uri: str, *, partition_by: str | None = None, metadata: str | None = None) -> None:
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if metadata:
        writer = writer.option("userMetadata", metadata)
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.save(uri)


def add_columns(spark, uri: str, schema: T.StructType, partition_by: str | None = None,
                metadata: str | None = None) -> None:
    """Schema-only commit (an empty mergeSchema append): the engine has no ALTER TABLE ADD COLUMNS."""
    append(spark.createDataFrame([], schema), uri, partition_by=partition_by, metadata=metadata)


def replace_rows(spark, df: DataFrame, uri: str, *, keys: list[str], scope: str, metadata: str | None = None
                 ) -> None:
    """Atomically make the rows matching `scope` (a SQL predicate over the table) equal `df`:
    matched keys are updated, new keys inserted, and rows in scope that `df` lacks deleted."""
    on = " AND ".join(f"t.{quoted(k)} = s.{quoted(k)}" for k in keys)
    _merge(spark, df, uri, f"ON {on} WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT * "
                           f"WHEN NOT MATCHED BY SOURCE AND ({scope}) THEN DELETE", metadata)


def replace_scope(spark, df: DataFrame, uri: str, *, keys: list[str], scope: str, metadata: str | None = None
                  ) -> None:
    """Atomically delete every row matching `scope` (over the table as `t`) and insert `df`: unlike
    replace_rows, every copy of a key goes, so duplicates from any cause are repaired."""
    # The equi-join keeps the engine's hash join; `s.key IS NULL` (keys are never NULL) makes no
    # pair match, so all rows in scope are deleted and every new row inserted once.
    on = " AND ".join(f"t.{quoted(k)} = s.{quoted(k)}" for k in keys) + f" AND s.{quoted(keys[0])} IS NULL"
    _merge(spark, df, uri, f"ON {on} WHEN NOT MATCHED THEN INSERT * "
                           f"WHEN NOT MATCHED BY SOURCE AND ({scope}) THEN DELETE", metadata)


def dedupe(spark, uri: str, *, keys: list[str], scope: str, metadata: str | None = None) -> None:
    """Keep one copy of each key among the rows matching `scope` (over the table as `t`), in one commit."""
    replace_scope(spark, read(spark, uri).alias("t").where(scope).dropDuplicates(keys), uri, keys=keys,
                  scope=scope, metadata=metadata)


def duplicate_keys(spark, uri: str, keys: list[str], by: str, where=None) -> dict[str, int]:
    """{value of column `by` (one of the keys): extra copies} for keys held by more than one row of
    the table (of the rows matching the `where` column condition, when given)."""
    if schema_or_none(spark, uri) is None:
        return {}
    from pyspark.sql import functions as F

    rows = read(spark, uri) if where is None else read(spark, uri).where(where)
    out: dict[str, int] = {}
    for r in (rows.groupBy(*keys).count().where(F.col("count") > 1)
              .groupBy(by).agg(F.sum(F.col("count") - 1).alias("extra")).collect()):
        out[r[by]] = int(r["extra"])
    return out


def _merge(spark, df: DataFrame, uri: str, clauses: str, metadata: str | None) -> None:
    view = f"lake_replace_{int(time.time() * 1e6)}"
    df.createOrReplaceTempView(view)
    # SQL MERGE takes commit metadata only from the session conf (Databricks; Sail ignores it):
    # set it for this statement alone, so later commits do not inherit it.
    if metadata:
        spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", metadata)
    try:
        spark.sql(f"MERGE INTO {ref(uri)} t USING {view} s {clauses}")
    finally:
        spark.catalog.dropTempView(view)
        if metadata:
            spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


def retry_conflicts(action, attempts: int = 8):
    """Run `action`, retrying Delta commit conflicts with jittered backoff."""
    import random

    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if not is_commit_conflict(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.1 * 2 ** attempt) * (0.5 + random.random()))


def replace_partitions(spark, df: DataFrame, uri: str, column: str, values: list[str], *,
                       metadata: str | None = None) -> None:
    """Atomically make the partitions `column IN values` hold exactly the rows of `df` (one replaceWhere
    commit; never dynamic partition overwrite, which replaces the whole table on Sail). Creates the table
    when missing. replaceWhere needs the exact table schema, so new columns are added first (a schema-only
    commit) and missing ones filled with typed NULLs; rows outside the partitions are left out (Sail would
    write them)."""
    from pyspark.sql import functions as F

    values = sorted(set(values))
    if not values:
        return
    predicate = f"{quoted(column)} IN ({', '.join(map(sql_string, values))})"
    df = df.where(predicate)
    existing = schema_or_none(spark, uri)
    if existing is None:
        append(df, uri, partition_by=column, metadata=metadata)
        return
    if set(df.columns) - set(existing.fieldNames()):
        add_columns(spark, uri, df.schema, partition_by=column, metadata=metadata)
        existing = schema_or_none(spark, uri)
    df = df.select([F.col(quoted(f.name)) if f.name in df.columns else F.lit(None).cast(f.dataType).alias(f.name)
                    for f in existing.fields])
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if metadata:
        writer = writer.option("userMetadata", metadata)
    writer.save(uri)
