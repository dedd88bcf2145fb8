"""A real Dagster webserver + daemon for tests and benchmarks: started on a free 127.0.0.1 port
with a fresh DAGSTER_HOME, stopped (by their own pids) on exit; GraphQL helpers to drive them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions runs(limit: 50) { runId status tags { key value } } }
    ... on PythonError { message }
  }
}"""
DONE = ("COMPLETED", "FAILED", "CANCELED", "COMPLETED_SUCCESS", "COMPLETED_FAILED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"GraphQL {exc.code}: {exc.read().decode()[:2000]}") from None


def wait_http(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("dagster webserver did not start")


def wait_assets(port: int, deadline: float) -> None:
    """Until the code location's assets are loaded (the webserver answers before it has them)."""
    while time.monotonic() < deadline:
        if graphql(port, "{ assetNodes { id } }", {}).get("assetNodes"):
            return
        time.sleep(1)
    raise TimeoutError("the code location's assets did not load")


def wait_backfill(port: int, backfill_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if status["status"] in DONE:
            return status
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} not done after {timeout:.0f} s: {status}")


@contextlib.contextmanager
def dagster_running(lake_config: str, home: Path, env: dict | None = None, dagster_yaml: str = ""):
    """(port, env) of a webserver and a daemon serving lake_assets.definitions for `lake_config`."""
    home.mkdir(parents=True, exist_ok=True)
    if dagster_yaml:
        (home / "dagster.yaml").write_text(dagster_yaml)
    # Create the instance's storage first: the daemon, the webserver and their code servers creating a
    # fresh sqlite at once can leave it with two alembic heads ("more than one head present").
    from dagster import DagsterInstance

    DagsterInstance.from_config(str(home)).dispose()
    env = {**os.environ, **(env or {}), "LAKE_CONFIG": lake_config, "DAGSTER_HOME": str(home)}
    port = free_port()
    bin_dir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-m", "lake_assets.definitions"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([str(bin_dir / "dagster-webserver"), "-m", "lake_assets.definitions", "-h", "127.0.0.1",
                               "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_http(port, time.monotonic() + 300)
        wait_assets(port, time.monotonic() + 300)
        yield port, env
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
