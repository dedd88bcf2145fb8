"""Turning core results into Dagster metadata the UI shows readably."""

from __future__ import annotations

import threading

from dagster import MetadataValue, TableColumn, TableSchema
from pyspark.sql import types as T

from lake_assets.core.layout import BATCH_ID, INGESTED_AT, LANDING_DATE, LINE, SOURCE_FILE

AUDIT_DESCRIPTIONS = {
    SOURCE_FILE: "full URI of the landing file the row came from",
    LINE: "line number of the record in its file",
    INGESTED_AT: "when the row was written (UTC)",
    BATCH_ID: "the ingestion batch that wrote the row (ledger batch_id)",
    LANDING_DATE: "landing day (partition): from the object key, else its last-modified day (UTC)",
}
SCHEMA_READ_SECONDS = 3.0   # definitions load never waits longer on the warehouse


def _columns(t: T.DataType, name: str, descriptions: dict[str, str]) -> list[TableColumn]:
    """Nested structs (also inside arrays) become one column per leaf: `device.fw.major`, `signals[].value`."""
    if isinstance(t, T.StructType) and t.fields:
        return [c for f in t.fields for c in _columns(f.dataType, f"{name}.{f.name}" if name else f.name, descriptions)]
    if isinstance(t, T.ArrayType) and isinstance(t.elementType, T.StructType):
        return _columns(t.elementType, f"{name}[]", descriptions)
    return [TableColumn(name, t.simpleString(), description=descriptions.get(name))]


def table_schema(schema: T.StructType | None, rescued_column: str | None = None) -> TableSchema:
    descriptions = dict(AUDIT_DESCRIPTIONS)
    if rescued_column:
        descriptions[rescued_column] = "JSON object of the values that did not fit a column, keyed by field path"
    return TableSchema(columns=_columns(schema, "", descriptions) if schema else [])


def column_schema(schema: T.StructType | None, rescued_column: str | None = None) -> dict:
    return {"dagster/column_schema": table_schema(schema, rescued_column)}


def logged_schema(schemas_uri: str, rescued_column: str) -> T.StructType | None:
    """The latest schema of a bronze table from its schema log, or None when there is none yet or
    the warehouse does not answer within SCHEMA_READ_SECONDS (definitions must load regardless)."""
    from lake_assets.core.bronze import bronze_table_schema
    from lake_assets.core.schema_log import SchemaLog

    found: list = []

    def read():
        try:
            current = SchemaLog(schemas_uri).current()
            found.append(bronze_table_schema(current.schema, rescued_column) if current else None)
        except Exception:  # unreachable, no bucket, unreadable document: no schema at definition time
            found.append(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(SCHEMA_READ_SECONDS)
    return found[0] if found else None


def table_metadata(uri: str, table_name: str, schemas_uri: str | None = None, rescued_column: str | None = None) -> dict:
    out = {"dagster/uri": MetadataValue.url(uri) if uri.startswith(("http://", "https://")) else MetadataValue.text(uri),
           "dagster/table_name": table_name}
    if schemas_uri:
        schema = logged_schema(schemas_uri, rescued_column)
        if schema is not None:
            out.update(column_schema(schema, rescued_column))
    return out
