"""Table metadata the Spark Connect API does not expose on every engine (version, commit history),
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
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        # delta-rs takes credentials from the environment only, else asks the instance metadata
        # service: hand it what boto3 resolved (a profile in ~/.aws, SSO, …), the identity the rest uses.
        import boto3

        credentials = boto3.Session().get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            options.update(AWS_ACCESS_KEY_ID=frozen.access_key, AWS_SECRET_ACCESS_KEY=frozen.secret_key)
            if frozen.token:
                options["AWS_SESSION_TOKEN"] = frozen.token
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


def commits_of(uri: str, metadata: str, last: int = 100) -> list[int]:
    """Versions among the `last` commits whose userMetadata is `metadata` (a batch id): how a writer
    finds out whether, and how often, its own commit landed when S3's answer was ambiguous."""
    table = _table(uri)
    return sorted(h["version"] for h in table.history(last) if h.get("userMetadata") == metadata) if table else []
