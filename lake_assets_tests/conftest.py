"""Shared fixtures: one local S3 server (moto) for the whole session, its environment applied
before any Spark engine or S3 client is created; helpers to land files and write configs."""

import os
import textwrap
import uuid

import pytest

from lake_assets.localstack import LocalS3


@pytest.fixture(scope="session", autouse=True)
def local_s3():
    os.environ.pop("LAKE_CONFIG", None)
    with LocalS3() as s3:
        s3.apply_env()
        yield s3


@pytest.fixture
def buckets(local_s3):
    """Fresh landing and warehouse buckets for one test: (landing_uri, warehouse_uri)."""
    suffix = uuid.uuid4().hex[:8]
    landing, warehouse = f"s3://landing-{suffix}", f"s3://lake-{suffix}"
    local_s3.create_buckets(landing, warehouse)
    return landing, warehouse


def write_config(path, landing: str, warehouse: str, sources: str, extra: str = "") -> str:
    """Write a lake YAML with the given `sources:` body (indented YAML) and return its path."""
    text = f"landing: {landing}\nwarehouse: {warehouse}\nsources:\n" + textwrap.indent(textwrap.dedent(sources), "  ")
    path.write_text(text + textwrap.dedent(extra))
    return str(path)
