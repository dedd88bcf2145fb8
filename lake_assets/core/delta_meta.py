"""Table metadata the Spark Connect API does not expose on every engine (version, history),
read with delta-rs. Metadata calls only: delta-rs data reads abort the process at exit (ENGINE.md)."""

from __future__ import annotations

import os


def storage_options(uri: str) -> dict[str, str]:
    if not uri.startswith("s3"):
        return {}
    options = {"AWS_REGION": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    options["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
    return options


def _table(uri: str):
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=storage_options(uri))
    except TableNotFoundError:
        return None


def table_version(uri: str) -> int | None:
    table = _table(uri)
    return table.version() if table is not None else None


def history(uri: str, limit: int | None = None) -> list[dict]:
    table = _table(uri)
    return table.history(limit) if table is not None else []
