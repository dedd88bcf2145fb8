"""`engine: databricks` end to end without an account: the real Dagster assets, the real
dagster-databricks Pipes clients and Databricks SDK, against a fake workspace (fake_databricks)
that runs each submitted job's entry point for real, against the test session's embedded Sail
server as the cluster's Spark, with a local folder as the Volume."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from lake_assets.config import ConfigError, parse_config
from lake_assets.core import tables
from lake_assets.core.layout import Layout, gold_uri, silver_uri
from lake_assets.engine import _embedded_url, spark_session
from lake_assets.orchestration import databricks
from lake_assets.orchestration.bronze import bronze_asset
from lake_assets.orchestration.resources import LakeResource
from lake_assets.orchestration.silver_gold import gold_asset, silver_asset
from lake_assets_tests.fake_databricks import FakeDatabricks
from lake_assets_tests.scenario_helpers import UPSERT, Lake

D1, D2 = "2026-01-01", "2026-01-02"
pytestmark = pytest.mark.embedded   # the fake workspace runs its jobs on the embedded engine

SILVER = UPSERT + """\
    expectations:
      has_id: {expr: "id IS NOT NULL", on_violation: EXPECT}
"""
GOLD = """\
  totals:
    from: [events]
    sql: "SELECT v, count(*) AS events FROM events GROUP BY v"
"""


@pytest.fixture
def workspace(tmp_path, spark, monkeypatch):
    volume = tmp_path / "volume"
    volume.mkdir()
    with FakeDatabricks(volume, _embedded_url()) as fake:
        monkeypatch.setenv("DATABRICKS_HOST", fake.host)
        monkeypatch.setenv("DATABRICKS_TOKEN", "fake-token")
        yield fake


def databricks_lake(tmp_path: Path, fake: FakeDatabricks, compute: str, on_violation: str = "quarantine") -> Lake:
    # The Unity Catalog names: here the engine's own catalog, as Databricks' would be `main` or so.
    spark = spark_session()
    engine = {"kind": "databricks", "databricks": {
        "wheel": str(fake.volume / "lake_assets-0.1.0-py3-none-any.whl"), "volume": str(fake.volume),
        "poll_interval_seconds": 0.2, "catalog": spark.catalog.currentCatalog(),
        "schema": spark.catalog.currentDatabase(), **json.loads(compute)}}
    return Lake(tmp_path, engine=engine, source="ev", schema_hints="seq BIGINT", checks={"malformed_rate_error": 0.5},
                silver=SILVER.replace("EXPECT", on_violation), gold=GOLD)


def assets(lake):
    return [bronze_asset(lake, lake.source("ev")), silver_asset(lake, lake.silver["events"]),
            gold_asset(lake, lake.gold["totals"])]


def materialize(lake: Lake, partition: str, **kw):
    return dg.materialize(assets(lake.lake_config), partition_key=partition,
                          resources={"lake_resource": LakeResource(config_path=str(lake.config))}, **kw)


@pytest.mark.parametrize("compute", [
    '{"existing_cluster_id": "0101-000000-fake"}',
    pytest.param('{"new_cluster": {"spark_version": "17.3.x-scala2.13", "num_workers": 1}}', marks=pytest.mark.slow),
    pytest.param("{}", marks=pytest.mark.slow),  # serverless
], ids=["existing-cluster", "job-cluster", "serverless"])
def test_bronze_silver_gold_run_as_databricks_jobs(workspace, tmp_path, compute):
    lake = databricks_lake(tmp_path, workspace, compute)
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}, {"id": "2", "seq": 1, "payload": {"v": "a"}},
                             {"seq": 3, "payload": {"v": "b"}, "extra": {"x": 1}}, "not json"])
    result = materialize(lake, D1)
    assert result.success
    jobs = 3   # bronze (ingest and its checks' audit), silver, gold
    assert len(workspace.runs) == jobs and all(r.state()["result_state"] == "SUCCESS" for r in workspace.runs.values())
    tasks = [r.task for r in workspace.runs.values()]
    assert [t["python_wheel_task"]["entry_point"] for t in tasks] == ["lake-remote"] * jobs
    if "existing" in compute:   # Pipes parameters as task arguments; the wheel as a cluster library
        assert "--dagster-pipes-context" in tasks[0]["python_wheel_task"]["parameters"]
        assert tasks[0]["libraries"] == [{"whl": str(workspace.volume / "lake_assets-0.1.0-py3-none-any.whl")}]
    elif "new_cluster" in compute:  # ... or in the new cluster's environment
        assert "DAGSTER_PIPES_CONTEXT" in tasks[0]["new_cluster"]["spark_env_vars"]
    else:  # serverless: the wheel is a dependency of the task's environment
        (env,) = workspace.runs[1].submit["environments"]
        assert env["spec"]["dependencies"] == [str(workspace.volume / "lake_assets-0.1.0-py3-none-any.whl")]

    meta = {m.materialization.asset_key.path[0]: m.materialization.metadata
            for m in result.get_asset_materialization_events()}
    # the day's facts, as the local step reports them
    assert meta["bronze"]["rows"].value == 3 and meta["bronze"]["malformed"].value == 1
    assert meta["bronze"]["new_files"].value == 1 and meta["bronze"]["lake/blocked"].value == ""
    assert meta["bronze"]["rescued_rows"].value == 0  # addNewColumns: extra.x became a column
    assert "extra.x" in [c.name for c in meta["bronze"]["dagster/column_schema"].schema.columns]
    assert meta["bronze"]["dagster/table_name"].value == "sail.default.bronze_ev"
    assert meta["silver"]["rows_quarantined"].value == 1 and meta["silver"]["table_rows"].value == 2
    assert meta["gold"]["table_rows"].value == 1
    assert meta["gold"]["Databricks Job Run ID"].value in {str(r) for r in workspace.runs}
    # The checks, audited on the cluster: 1 malformed line of 4, no rescued rows, no accepted schema yet.
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"rescued_data_rate", "malformed_rate", "unreadable_files", "schema_drift"}
    assert all(e.partition == D1 for e in evaluations.values())
    assert not evaluations["malformed_rate"].passed and evaluations["malformed_rate"].severity.value == "WARN"
    assert evaluations["malformed_rate"].metadata["malformed_pct"].value == 25.0
    assert evaluations["rescued_data_rate"].passed
    assert evaluations["rescued_data_rate"].metadata["rows"].value == 3
    assert evaluations["unreadable_files"].passed and evaluations["schema_drift"].passed

    config, spark = lake.lake_config, spark_session()
    assert tables.read(spark, Layout(config.warehouse, "ev").bronze).count() == 3
    assert [tuple(r) for r in tables.read(spark, gold_uri(config.warehouse, "totals")).select("v", "events").collect()] \
        == [("a", 2)]
    # Each job registered its table over the path (CREATE TABLE ... LOCATION, else the job fails);
    # Sail's catalog lives in the job's session, so only the job could read it by name here.
    assert not list(workspace.volume.glob("tmp/*")), "Pipes temp dirs left on the Volume"


def test_a_day_blocked_on_the_cluster_is_not_published(workspace, tmp_path):
    # 2 malformed lines of 3 > malformed_rate_error 0.5: the cluster's audit blocks the day, so
    # silver and gold submit no job and the run fails naming the day.
    lake = databricks_lake(tmp_path, workspace, '{"existing_cluster_id": "c"}')
    lake.land(D2, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}, "not json", "nor this"])
    result = materialize(lake, D2, raise_on_error=False)
    assert not result.success and len(workspace.runs) == 1   # the bronze job only
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["malformed_rate"].passed and evaluations["malformed_rate"].severity.value == "ERROR"
    (bronze,) = [m.materialization for m in result.get_asset_materialization_events()]
    assert bronze.partition == D2 and bronze.metadata["lake/blocked"].value.startswith("malformed_rate ERROR")
    failures = result.get_step_failure_events()
    assert failures and all(D2 in f.step_failure_data.error.message for f in failures)
    assert tables.schema_or_none(spark_session(), silver_uri(lake.warehouse, "events")) is None


def test_a_failing_job_fails_the_step(workspace, tmp_path):
    lake = databricks_lake(tmp_path, workspace, '{"existing_cluster_id": "c"}', on_violation="fail")
    lake.land(D2, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}, {"seq": 2, "payload": {"v": "a"}}])
    result = materialize(lake, D2, raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key.startswith("silver") and "failed on Databricks" in failure.step_failure_data.error.message
    assert "'has_id' (1 of 2 rows)" in failure.step_failure_data.error.message  # the job's own error
    assert [r.state()["result_state"] for r in workspace.runs.values()] == ["SUCCESS", "FAILED"]
    assert tables.schema_or_none(spark_session(), silver_uri(lake.warehouse, "events")) is None


def test_a_job_that_never_opens_pipes_fails_the_step(workspace, tmp_path, monkeypatch):
    # Pipes alone would report success (dagster issue 17868): the step insists on the job's result.
    monkeypatch.setattr(databricks, "ENTRY_POINT", "not-ours")
    lake = databricks_lake(tmp_path, workspace, '{"existing_cluster_id": "c"}')
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}])
    result = materialize(lake, D1, raise_on_error=False)
    assert not result.success and workspace.runs[1].state()["result_state"] == "SUCCESS"
    assert "ended without reporting a result" in result.get_step_failure_events()[0].step_failure_data.error.message


DEFS = """
from lake_assets.config import ConfigError, load_config, parse_config
from lake_assets.orchestration.bronze import bronze_asset
from lake_assets.orchestration.resources import LakeResource
import dagster as dg

lake = load_config({config!r})
defs = dg.Definitions(assets=[bronze_asset(lake, lake.source("ev"))],
                      resources={{"lake_resource": LakeResource(config_path={config!r})}})
"""


@pytest.mark.slow
def test_an_interrupted_run_cancels_the_job(workspace, tmp_path):
    # The job sleeps at each fault point, so it is still running when the Dagster run is interrupted.
    lake = databricks_lake(tmp_path, workspace, '{"new_cluster": {"spark_version": "17.3.x-scala2.13", '
                                                '"spark_env_vars": {"LAKE_RANDOM_DELAY_MS": "60000"}}}')
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a"}}])
    (tmp_path / "defs.py").write_text(textwrap.dedent(DEFS.format(config=str(lake.config))))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).parent.parent)}
    (tmp_path / "dagster.yaml").write_text("")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-f",
                             str(tmp_path / "defs.py"), "--select", "*", "--partition", D1],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (workspace.runs and workspace.runs[1].state()["life_cycle_state"] == "RUNNING"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    run = workspace.runs[1]
    assert proc.returncode != 0, out[-3000:]
    assert run.canceled and run.state()["result_state"] == "CANCELED" and run.proc.poll() is not None
    assert "canceling Databricks job" in out


@pytest.mark.parametrize("engine, message", [
    ("{kind: databricks}", "kind databricks needs databricks"),
    ("{kind: databricks, databricks: {wheel: w.whl, volume: /Volumes/a/b/c, existing_cluster_id: x, "
     "new_cluster: {num_workers: 1}}}", "existing_cluster_id or new_cluster, not both"),
    ("{kind: databricks, databricks: {wheel: w.whl, volume: /Volumes/a/b/c, catalog: main}}", "both catalog and schema"),
    ("{kind: embedded, databricks: {wheel: w.whl, volume: /Volumes/a/b/c}}", "only it takes one"),
])
def test_databricks_engine_config_errors_name_the_problem(engine, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(f"landing: l\nwarehouse: w\nengine: {engine}\nsources:\n  ev: {{path: ev/, start_date: {D1}}}\n")
