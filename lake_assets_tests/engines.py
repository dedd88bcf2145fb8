"""Spark Connect servers the conformance tests run the core scenarios against, besides the embedded
Sail engine: Apache Spark 4.2 on the JVM with Delta Lake (started from the venv's pyspark, jars
from Maven Central in the project's `.cache/ivy`), and Sail in local-cluster mode with 2 workers.

    python -m lake_assets_tests.engines prefetch   # resolve the Maven jars once (scripts/setup)

Each server is a subprocess on a free 127.0.0.1 port that dies with this process (PDEATHSIG).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyspark

from lake_assets.localstack import _die_with_parent, _free_port

ROOT = Path(__file__).resolve().parent.parent
IVY = ROOT / ".cache" / "ivy"
# Delta for Spark 4.2: since Delta 4.1 the artifact name carries the Spark version. Maven Central
# has 4.4.0 of it (the pip delta-spark 4.4.1 has no jar of that name there).
DELTA = "io.delta:delta-spark_4.2_2.13:4.4.0"
MAVEN = "https://repo1.maven.org/maven2"
SPARK_HOME = Path(pyspark.__file__).parent


class EngineStartError(RuntimeError):
    pass


def _spark_env() -> dict:
    """The server's Python workers run the reader's data sources: the venv's Python, with this
    checkout importable (the same minor version as the client)."""
    env = dict(os.environ)
    env.update(SPARK_HOME=str(SPARK_HOME), PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p),
               SPARK_LOCAL_IP="127.0.0.1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _submit(*args: str) -> list[str]:
    return [str(SPARK_HOME / "bin" / "spark-submit"), "--packages", DELTA, "--repositories", MAVEN,
            "--conf", f"spark.jars.ivy={IVY}", *args]


def prefetch() -> None:
    """Resolve the Maven jars into .cache/ivy (a no-op run of spark-submit; quick when cached)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py") as noop:
        noop.write("pass\n")
        noop.flush()
        p = subprocess.run(_submit(noop.name), env=_spark_env(), capture_output=True, text=True)
    if p.returncode:
        raise EngineStartError(f"cannot resolve {DELTA}: {p.stderr[-3000:]}")


class _Server:
    """A Spark Connect server subprocess; `remote` is its sc:// URL once `start()` returned."""

    name = "server"

    def __init__(self) -> None:
        self.port = _free_port()
        self.remote = f"sc://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile("w+", prefix=f"lake-{self.name}-", suffix=".log", delete=False)
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict:
        return _spark_env()

    def start(self, timeout: float = 300) -> _Server:
        self._proc = subprocess.Popen(self.command(), env=self.env(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EngineStartError(f"{self.name} exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise EngineStartError(f"{self.name} did not listen on {self.port} within {timeout}s: {self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


class SparkJvmServer(_Server):
    """Apache Spark 4.2 (the pip pyspark's jars) + Delta Lake as a Spark Connect server, local[2]."""

    name = "spark-jvm"

    def command(self) -> list[str]:
        confs = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
            "spark.sql.shuffle.partitions": "4",
            # Python workers fork from a daemon that has the reader imported (importing it is most of
            # a worker's start, and Spark starts one per data source plan and per task).
            "spark.python.daemon.module": "lake_assets.spark_daemon",
        }
        args = [a for k, v in confs.items() for a in ("--conf", f"{k}={v}")]
        return _submit("--master", "local[2]", *args, "--class",
                       "org.apache.spark.sql.connect.service.SparkConnectServer")


class SailClusterServer(_Server):
    """Sail's distributed mode: a driver and 2 worker processes on this machine."""

    name = "sail-cluster"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("sail")), "spark", "server", "--ip", "127.0.0.1",
                "--port", str(self.port)]

    def env(self) -> dict:
        env = _spark_env()
        env.update(SAIL_MODE="local-cluster", SAIL_CLUSTER__WORKER_INITIAL_COUNT="2",
                   SAIL_CLUSTER__WORKER_MAX_COUNT="2", RUST_LOG="warn,sail_common::actor=error")
        if env.get("AWS_ENDPOINT_URL", "").startswith("http://"):
            env.setdefault("AWS_ALLOW_HTTP", "true")
        return env


SERVERS = {"spark_jvm": SparkJvmServer, "sail_cluster": SailClusterServer}
_started: dict[str, _Server] = {}


def engine_config(name: str):
    """The EngineConfig of one conformance engine: "sail" is the embedded one; the others are
    servers, started on first use and kept for the session (stop_servers)."""
    from lake_assets.config import EngineConfig

    if name == "sail":
        return EngineConfig()
    if name not in _started:
        _started[name] = _start(SERVERS[name])
    return EngineConfig(kind="spark_connect", remote=_started[name].remote)


def _start(server_class, attempts: int = 2) -> _Server:
    """A started server; a server that exits while starting gets one more try (a Sail cluster once
    aborted at startup under load: gRPC's epoll_wait "Bad file descriptor", exit -6)."""
    for _ in range(attempts - 1):
        server = server_class()
        try:
            return server.start()
        except EngineStartError:
            server.stop()
    return server_class().start()


def stop_servers() -> None:
    for server in _started.values():
        server.stop()

if __name__ == "__main__" and sys.argv[1:] == ["prefetch"]:
    prefetch()
