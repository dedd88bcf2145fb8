"""A backfill launched the way the UI launches it — GraphQL against a running webserver, executed
by the daemon — runs ranges per run (BackfillPolicy) and yields the same bronze table as
day-by-day runs."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lake_assets.config import load_config
from lake_assets.core.bronze import Layout, ingest
from lake_assets.demo.fixtures import write_fixture_lake
from lake_assets.engine import spark_session

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def _wait_http(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("dagster webserver did not start")


def _table(lake) -> list[tuple]:
    df = spark_session().read.format("delta").load(Layout(lake.warehouse, "telemetry").bronze)
    # By column name: one backfill batch infers all columns at once, day-by-day runs append
    # each day's new columns at the end, so only the column order may differ.
    data = sorted(c for c in df.columns if c not in ("_batch_id", "_ingested_at"))
    return sorted(tuple(str(v) for v in r) for r in df.select(*data).collect())


@pytest.mark.slow
def test_ui_backfill_matches_day_by_day(tmp_path):
    days = write_fixture_lake(tmp_path / "backfilled", 3)
    write_fixture_lake(tmp_path / "daily", 3)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "LAKE_CONFIG": str(tmp_path / "backfilled" / "lake.yaml"), "DAGSTER_HOME": str(home)}
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-m", "lake_assets.definitions"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([str(bin_dir / "dagster-webserver"), "-m", "lake_assets.definitions", "-h", "127.0.0.1",
                               "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        _wait_http(port, time.monotonic() + 120)
        launched = _graphql(port, LAUNCH, {"params": {
            "assetSelection": [{"path": ["bronze", "telemetry"]}], "partitionNames": days}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            status = _graphql(port, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
            if status["status"] in ("COMPLETED", "FAILED", "CANCELED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"):
                break
            time.sleep(2)
        assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)

    # One run covered the whole range (BackfillPolicy.multi_run), and it was a reprocessing run.
    runs = status["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == \
        (days[0], days[-1])

    backfilled = load_config(tmp_path / "backfilled" / "lake.yaml")
    daily = load_config(tmp_path / "daily" / "lake.yaml")
    for day in days:
        ingest(spark_session(), daily, daily.sources["telemetry"], [day], log=lambda m: None)
    rows = _table(backfilled)
    assert len(rows) == 304 and rows == [tuple(v.replace(str(tmp_path / "daily"), str(tmp_path / "backfilled"))
                                               for v in r) for r in _table(daily)]
