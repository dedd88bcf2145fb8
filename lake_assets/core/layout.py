"""Where every table of the lake lives, and the names of the columns lake_assets adds.

The one place for the public table layout of PRODUCT.md: a source's bronze table, its quarantine,
its ingestion state, and the silver and gold tables; the audit columns bronze adds to every row
and the partition column of each layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from lake_assets import storage

# Audit columns of every bronze (and quarantine) row.
SOURCE_FILE = "_source_file"     # the landing object's URI
LINE = "_line"                   # 1-based line of the record in its file (NDJSON), else the document's line
RECORD = "_record"               # 0-based position of the record in its file (all framings)
INGESTED_AT = "_ingested_at"
BATCH_ID = "_batch_id"
LANDING_DATE = "_landing_date"   # the day the file landed: bronze and silver partition column
AUDIT_COLUMNS = (SOURCE_FILE, LINE, RECORD, INGESTED_AT, BATCH_ID, LANDING_DATE)

# Quarantine-only columns.
RAW = "_raw"
ERROR = "_error"

# The key of a rescued-data JSON object that names the row's file (as Auto Loader's does).
RESCUED_FILE_PATH = "_file_path"

BRONZE_PARTITION = LANDING_DATE
SILVER_PARTITION = LANDING_DATE      # silver tables are partitioned like bronze
GOLD_PARTITION = "_partition_date"   # the day a gold row summarises
ROW_KEY = (LANDING_DATE, SOURCE_FILE, LINE)   # one bronze row per landed line


@dataclass(frozen=True)
class Layout:
    """Where a source's tables and state live under the warehouse."""
    warehouse: str
    source: str

    @property
    def bronze(self) -> str:
        return storage.join(self.warehouse, "bronze", self.source)

    @property
    def quarantine(self) -> str:
        return storage.join(self.warehouse, "bronze", f"{self.source}__quarantine")

    @property
    def ledger(self) -> str:
        return storage.join(self.warehouse, "_state", self.source, "ledger")

    @property
    def schemas(self) -> str:
        return storage.join(self.warehouse, "_state", self.source, "_schemas")


def silver_uri(warehouse: str, name: str) -> str:
    return storage.join(warehouse, "silver", name)


def silver_quarantine_uri(warehouse: str, name: str) -> str:
    return storage.join(warehouse, "silver", f"{name}__quarantine")


def gold_uri(warehouse: str, name: str) -> str:
    return storage.join(warehouse, "gold", name)


def table_uri(warehouse: str, layer: str, name: str) -> str:
    """The Delta table of an asset: layer is bronze, silver or gold."""
    if layer == "bronze":
        return Layout(warehouse, name).bronze
    return {"silver": silver_uri, "gold": gold_uri}[layer](warehouse, name)
