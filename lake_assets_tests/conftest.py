"""Shared fixtures: one local S3 server (moto) for the whole session, its environment applied
before any Spark engine or S3 client is created; fresh buckets; the `spark` session of each engine
under test. The lake builder and the helpers tests share are in scenario_helpers.py."""

import os
import uuid

import pytest

from lake_assets.localstack import LocalS3
from lake_assets_tests.scenario_helpers import write_config  # noqa: F401 (tests import it from here too)


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


# Conformance: tests that take `spark` (or `engine`) run on the embedded Sail engine, and (slow) on
# Apache Spark 4.2 + Delta on the JVM and on Sail's local cluster, each a Spark Connect server
# started once per session on first use. Tests marked `embedded` (or modules with that pytestmark)
# take the embedded engine only: `spark` is then the embedded session, not parametrised.
ENGINES = ["sail", pytest.param("spark_jvm", marks=pytest.mark.slow),
           pytest.param("sail_cluster", marks=pytest.mark.slow)]


def pytest_configure(config):
    config.addinivalue_line("markers", "embedded: `spark` is the embedded engine only (no conformance engines)")


def pytest_generate_tests(metafunc):
    if "engine" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("embedded"):
        return
    for mark in metafunc.definition.iter_markers("parametrize"):  # a test that names its engines itself
        names = mark.args[0] if isinstance(mark.args[0], (list, tuple)) else mark.args[0].split(",")
        if "engine" in [n.strip() for n in names]:
            return
    metafunc.parametrize("engine", ENGINES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def engine(request, local_s3):
    """The name of the engine under test (see pytest_generate_tests)."""
    return getattr(request, "param", "sail")


@pytest.fixture(scope="session")
def spark(engine):
    from lake_assets.engine import spark_session
    from lake_assets_tests.engines import engine_config

    return spark_session(engine_config(engine))


@pytest.fixture(scope="session", autouse=True)
def _stop_servers():
    yield
    from lake_assets.engine import shutdown
    from lake_assets_tests.engines import stop_servers

    shutdown()  # clients before their servers
    stop_servers()
