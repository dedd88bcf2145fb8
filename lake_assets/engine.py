"""The one place that reaches Spark: an embedded Sail server (started lazily, once per process)
or any Spark Connect endpoint. Everything else receives the session from here."""

from __future__ import annotations

import atexit
import os
import threading

from lake_assets.config import EngineConfig
from lake_assets.errors import LakeError

_lock = threading.Lock()
_server = None
_sessions: dict[str, object] = {}


class EngineError(LakeError, RuntimeError):
    pass


def _prepare_environment() -> None:
    # Sail reads these once, when its first server starts in the process.
    os.environ.setdefault("RUST_LOG", "warn,sail_common::actor=error,sail_spark_connect=error")
    if os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        os.environ.setdefault("AWS_ALLOW_HTTP", "true")
    os.environ.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    # Sail's allocator (mimalloc, read when pysail loads) returns freed pages to the OS only after
    # a delay, and a worker thread that goes idle never does: 0.5 GiB of a batch's write stayed
    # resident under the next batch's scan. Return them at once (measured: peak RSS of a day with
    # type conflicts 1.48 -> 1.07 GiB at 1 GB, no slower; benchmarks/memory.py).
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
    # The reader's Python data sources run in this process. pyarrow's default pool (mimalloc)
    # hands their memory back to the OS so soon that every batch faults it in again; jemalloc
    # keeps it (measured: bronze 5-10 % faster, steadier, and a smaller peak RSS).
    import pyarrow as pa

    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pass


def _embedded_url() -> str:
    global _server
    if _server is None:
        _prepare_environment()
        from pysail.spark import SparkConnectServer

        _server = SparkConnectServer("127.0.0.1", 0)
        _server.start(background=True)
    host, port = _server.listening_address
    return f"sc://{host}:{port}"


def spark_session(engine: EngineConfig | None = None):
    """The process-wide Spark session for this engine config."""
    engine = engine or EngineConfig()
    if engine.kind == "databricks":
        raise EngineError("engine databricks runs each step as a Databricks job: no Spark session here")
    with _lock:
        url = _embedded_url() if engine.kind == "embedded" else "active" if engine.kind == "active" else engine.remote
        session = _sessions.get(url)
        if session is None:
            import warnings

            warnings.filterwarnings("ignore", message=".*pandas >= 3.0.0.*")
            from pyspark.sql import SparkSession

            try:
                # active: the session the job's runtime made (else as SPARK_REMOTE or the runtime says).
                session = (SparkSession.getActiveSession() or SparkSession.builder.getOrCreate() if url == "active"
                           else SparkSession.builder.remote(url).create())
                session.conf.set("spark.sql.session.timeZone", "UTC")
                # Apache Spark writes Parquet timestamps as INT96 by default: delta-rs (and other
                # readers) read those as nanoseconds, which overflow outside 1677-2262.
                session.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            except Exception as exc:
                raise EngineError(f"cannot connect to Spark at {url}: {exc}") from None
            from lake_assets.core.reader import register_sources

            register_sources(session)
            _sessions[url] = session
        return session


def is_embedded(spark) -> bool:
    """Whether `spark` talks to this process's embedded server, whose Python data sources run in
    this process (so they can share memory with each other)."""
    with _lock:
        if _server is None:
            return False
        host, port = _server.listening_address
        return _sessions.get(f"sc://{host}:{port}") is spark


@atexit.register
def shutdown() -> None:
    """Stop clients before the server, or the client retries at interpreter exit. The active
    session belongs to the job's runtime, not to us."""
    global _server
    with _lock:
        for url, session in _sessions.items():
            if url == "active":
                continue
            try:
                session.stop()
            except Exception:
                pass
        _sessions.clear()
        if _server is not None:
            try:
                _server.stop()
            except Exception:
                pass
            _server = None
