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


# Conformance: tests that take `spark` run on the embedded Sail engine, and (slow) on Apache
# Spark 4.2 + Delta on the JVM and on Sail's local cluster, each a Spark Connect server started
# once per session on first use. Modules that need the embedded engine only define their own.
ENGINES = ["sail", pytest.param("spark_jvm", marks=pytest.mark.slow),
           pytest.param("sail_cluster", marks=pytest.mark.slow)]
_servers: dict = {}


def engine_config(name: str):
    """The EngineConfig of one conformance engine (its server started on first use)."""
    from lake_assets.config import EngineConfig
    from lake_assets_tests.engines import SERVERS

    if name == "sail":
        return EngineConfig()
    if name not in _servers:
        _servers[name] = SERVERS[name]().start()
    return EngineConfig(kind="spark_connect", remote=_servers[name].remote)


@pytest.fixture(scope="session", params=ENGINES)
def engine(request, local_s3):
    """The name of the engine under test."""
    return request.param


@pytest.fixture(scope="session")
def spark(engine):
    from lake_assets.engine import spark_session

    return spark_session(engine_config(engine))


@pytest.fixture(scope="session", autouse=True)
def _stop_servers():
    yield
    from lake_assets.engine import shutdown

    shutdown()  # clients before their servers
    for server in _servers.values():
        server.stop()


@pytest.fixture(scope="session")
def embedded_spark(local_s3):
    from lake_assets.engine import spark_session

    return spark_session()
