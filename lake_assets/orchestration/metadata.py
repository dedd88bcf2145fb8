"""Turning core results into Dagster metadata."""

from __future__ import annotations

from dagster import MetadataValue, TableColumn, TableSchema
from pyspark.sql import types as T


def table_schema(schema: T.StructType | None) -> TableSchema:
    return TableSchema(columns=[TableColumn(f.name, f.dataType.simpleString()) for f in (schema.fields if schema else [])])


def column_schema(schema: T.StructType | None) -> dict:
    return {"dagster/column_schema": table_schema(schema)}


def uri_metadata(uri: str) -> dict:
    return {"dagster/uri": MetadataValue.path(uri)}
