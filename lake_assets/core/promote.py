"""Promote a rescued field into a real column: add the column, move historic values out of the
rescued JSON into it (one atomic MERGE), record the change in the schema log and accept it.
Rerunning changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson
import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core import tables
from lake_assets.core.bronze import bronze_table_schema
from lake_assets.core.fieldpath import FieldPath, segment
from lake_assets.core.layout import AUDIT_COLUMNS, BRONZE_PARTITION, LINE, RESCUED_FILE_PATH, ROW_KEY, Layout
from lake_assets.core.records import Fitter
from lake_assets.core.schema import Inferrer, apply_hints, drop_unknown, parse_type
from lake_assets.core.schema_log import SchemaLog
from lake_assets.core.typed_rows import arrow_value, declared_schema
from lake_assets.errors import LakeError

_MOVED_KEYS = [*(T.StructField(k, T.LongType() if k == LINE else T.StringType()) for k in ROW_KEY),
               T.StructField("new_rescued", T.StringType())]


class PromoteError(LakeError, ValueError):
    pass


@dataclass(frozen=True)
class Promotion:
    path: str        # as the rescued column's keys write it (FieldPath.format)
    type: str
    schema_version: int
    rows_moved: int
    rows_left: int   # rows whose value still does not fit the type (they stay rescued)


def _field_type(schema: T.StructType, parts: tuple[str, ...]) -> T.DataType | None:
    t: T.DataType = schema
    for part in parts:
        if not isinstance(t, T.StructType) or part not in t.fieldNames():
            return None
        t = t[part].dataType
    return t


def _rescued_key(path: FieldPath) -> str:
    """The path's key in the rescued JSON: its text, but a data field named like the file key is
    backtick-quoted there (records.rescued_json)."""
    text = path.format()
    return f"`{text}`" if text == RESCUED_FILE_PATH else text


def _infer_from_rescued(spark, df, rescued: str, key: str) -> T.DataType:
    def infer(batches):
        inferrer = Inferrer()
        for batch in batches:
            for text in batch.column(0).to_pylist():
                doc = orjson.loads(text)
                if key in doc:
                    inferrer.absorb({"v": doc[key]})
        yield pa.RecordBatch.from_pylist([{"schema": inferrer.result().json()}])

    merged = T.StructType([])
    from lake_assets.core.schema import merge_types
    for row in df.select(rescued).mapInArrow(infer, "schema string").collect():
        merged = merge_types(merged, T.StructType.fromJson(json.loads(row["schema"])))
    found = drop_unknown(merged)
    if found is None or "v" not in found.fieldNames():
        raise PromoteError(f"no rescued values for {key!r}; give the type with --type")
    return found["v"].dataType


def promote(spark, lake: LakeConfig, source: SourceConfig, path: str, type_ddl: str | None = None,
            log=print) -> Promotion:
    layout = Layout(lake.warehouse, source.name)
    try:
        field = FieldPath.parse(path)
    except ValueError:
        field = None
    if field is None or field.in_array or "" in field.steps:
        raise PromoteError(f"{path!r}: give a field path as the rescued column's keys write it, like a.b.c or "
                           f"a.`b.c` (fields inside arrays cannot be promoted)")
    path, parts, key = field.format(), field.steps, _rescued_key(field)
    schema_log = SchemaLog(layout.schemas)
    current = schema_log.current()
    if current is None or tables.schema_or_none(spark, layout.bronze) is None:
        raise PromoteError(f"source {source.name!r} has no bronze table yet; ingest first")
    rescued = source.rescued_data_column
    if parts[0] in AUDIT_COLUMNS or parts[0] == rescued:
        raise PromoteError(f"{path!r} is an audit column name and cannot become a data column")
    # orjson writes the rescued JSON: UTF-8 as it is, so its text of the key is the one to look for
    quoted = orjson.dumps(key).decode() + ":"
    candidates = tables.read(spark, layout.bronze).where(F.col(rescued).contains(quoted))
    wanted = _wanted_type(spark, schema_log, current.schema, field, type_ddl, candidates, rescued, key)

    # 1. Schema: log it and accept this one change (other drift stays for the drift check to report).
    new_schema = apply_hints(current.schema, [(list(parts), wanted)])
    version = schema_log.record(new_schema, f"promoted {path} {wanted.simpleString()}", [])
    if version is None:
        raise PromoteError("the schema log changed at the same time; run the command again")
    accepted = schema_log.accepted() or schema_log.versions()[0]
    schema_log.accept_change(apply_hints(accepted.schema, [(list(parts), wanted)]), f"promoted {path}")
    tables.add_columns(spark, layout.bronze, bronze_table_schema(new_schema, rescued), BRONZE_PARTITION,
                       f"promote {path}")

    # 2. Values, in one MERGE.
    count = _move_values(spark, layout.bronze, candidates, field, key, wanted, rescued)
    left = tables.read(spark, layout.bronze).where(F.col(rescued).contains(quoted)).count()
    log(f"promoted {path} as {wanted.simpleString()} (schema version {version.version}): moved {count} value(s) "
        f"out of {rescued}" + (f"; {left} row(s) keep values that do not fit" if left else ""))
    return Promotion(path, wanted.simpleString(), version.version, count, left)


def _wanted_type(spark, schema_log: SchemaLog, schema: T.StructType, field: FieldPath, type_ddl: str | None,
                 candidates, rescued: str, key: str) -> T.DataType:
    """The new column's type: the one a crashed earlier promotion added, else --type, else inferred."""
    path, parts = field.format(), field.steps
    existing = _field_type(schema, parts)
    # A column this command added earlier is finished again (a rerun after a crash moves what is left);
    # any other existing column is refused.
    resumed = existing is not None and any(v.reason.startswith(f"promoted {path} ") for v in schema_log.versions())
    if existing is not None and not resumed:
        raise PromoteError(f"{path} is already a column of type {existing.simpleString()}; nothing to promote. "
                           f"Its rescued values did not fit that type and stay rescued (a column's type never "
                           f"changes in place)")
    wanted = existing if resumed else parse_type(type_ddl) if type_ddl else _infer_from_rescued(spark, candidates,
                                                                                                 rescued, key)
    parent = _field_type(schema, parts[:-1]) if len(parts) > 1 else schema
    if parent is not None and not isinstance(parent, T.StructType):
        raise PromoteError(f"{FieldPath(parts[:-1])} is not a struct")
    return wanted


def _move_values(spark, bronze: str, candidates, field: FieldPath, key: str, wanted: T.DataType,
                 rescued: str) -> int:
    """Fit each rescued value (at `key`) to the type exactly as ingestion would and move those that
    fit, typed in Python as lake_typed does (the engine's from_json would round some doubles).
    Returns the rows moved."""
    parts = field.steps
    fitter = Fitter(T.StructType([T.StructField("v", wanted)]))
    moved_schema = T.StructType(_MOVED_KEYS + [T.StructField("value", declared_schema(wanted))])
    arrow_schema = to_arrow_schema(moved_schema)
    value_type = arrow_schema.field("value").type

    def move(batches):
        for batch in batches:
            out = {f.name: [] for f in moved_schema.fields}
            for row in batch.to_pylist():
                doc = orjson.loads(row[rescued])
                if key not in doc:
                    continue
                clean, left, _ = fitter.fit({"v": doc[key]})
                if left:
                    continue  # still does not fit: it stays rescued, never lost
                del doc[key]
                remaining = {k: v for k, v in doc.items() if k != RESCUED_FILE_PATH}
                for name in ROW_KEY:
                    out[name].append(row[name])
                out["new_rescued"].append(orjson.dumps(doc).decode() if remaining else None)
                out["value"].append(arrow_value(clean.get("v"), value_type))
            yield pa.RecordBatch.from_pydict(out, schema=arrow_schema)

    keys = list(ROW_KEY)
    moved = candidates.select(rescued, *keys).mapInArrow(move, moved_schema)
    value = F.col("value").cast(wanted)
    table = tables.read(spark, bronze)
    updated = table.join(moved, keys).withColumn(rescued, F.col("new_rescued"))
    # Column names are parsed as field paths: a name holding a dot is quoted (as FieldPath quotes it).
    column = value if len(parts) == 1 else F.col(segment(parts[0])).withField(FieldPath(parts[1:]).format(), value)
    updated = (updated.withColumn(parts[0], column).drop("new_rescued", "value")
               .select(*[F.col(segment(c)) for c in table.columns]))
    count = updated.count()
    if count:
        tables.retry_conflicts(lambda: tables.replace_rows(spark, updated, bronze, keys=keys, scope="false",
                                                           metadata=f"promote {field}"))
    return count
