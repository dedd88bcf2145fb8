"""Delta table operations used by every layer, addressed by path so they work with any catalog
(the embedded engine's catalog forgets names on restart)."""

from __future__ import annotations

import time

from pyspark.sql import DataFrame
from pyspark.sql import types as T


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ref(uri: str) -> str:
    return f"delta.`{uri}`"


def schema_or_none(spark, uri: str) -> T.StructType | None:
    """The table's schema, or None when no Delta table is there yet."""
    try:
        return spark.read.format("delta").load(uri).schema
    except Exception as exc:  # the engines raise different classes; the message is the contract
        text = str(exc)
        if any(s in text for s in ("No commit files", "is not a Delta table", "DELTA_MISSING_DELTA_TABLE",
                                   "Path does not exist", "PATH_NOT_FOUND", "not found")):
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
    view = f"lake_replace_{int(time.time() * 1e6)}"
    df.createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    # SQL MERGE takes commit metadata only from the session conf (Databricks; Sail ignores it):
    # set it for this statement alone, so later commits do not inherit it.
    if metadata:
        spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", metadata)
    try:
        spark.sql(f"MERGE INTO {ref(uri)} t USING {view} s ON {on} "
                  f"WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT * "
                  f"WHEN NOT MATCHED BY SOURCE AND ({scope}) THEN DELETE")
    finally:
        spark.catalog.dropTempView(view)
        if metadata:
            spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


def is_commit_conflict(exc: Exception) -> bool:
    text = str(exc)
    return any(s in text for s in ("Failed to commit transaction", "ConcurrentAppend", "ConcurrentModification",
                                   "ConcurrentDelete", "ProtocolChanged", "MetadataChanged",
                                   "DELTA_CONCURRENT"))


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
    predicate = f"`{column}` IN ({', '.join(map(sql_string, values))})"
    df = df.where(predicate)
    existing = schema_or_none(spark, uri)
    if existing is None:
        append(df, uri, partition_by=column, metadata=metadata)
        return
    if set(df.columns) - set(existing.fieldNames()):
        add_columns(spark, uri, df.schema, partition_by=column, metadata=metadata)
        existing = schema_or_none(spark, uri)
    df = df.select([F.col(f"`{f.name}`") if f.name in df.columns else F.lit(None).cast(f.dataType).alias(f.name)
                    for f in existing.fields])
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if metadata:
        writer = writer.option("userMetadata", metadata)
    writer.save(uri)
