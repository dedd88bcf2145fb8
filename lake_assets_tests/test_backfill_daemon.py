"""A backfill launched the way the UI launches it — GraphQL against a running webserver, executed
by the daemon — runs ranges per run (BackfillPolicy) and yields the same bronze table as
day-by-day runs."""

import pytest

from lake_assets.config import load_config
from lake_assets.core.bronze import ingest
from lake_assets.core.layout import Layout
from lake_assets.demo.fixtures import write_fixture_lake
from lake_assets.engine import spark_session
from lake_assets_tests.dagster_server import LAUNCH, dagster_running, graphql, wait_backfill


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
    with dagster_running(str(tmp_path / "backfilled" / "lake.yaml"), tmp_path / "dagster_home") as (port, _):
        launched = graphql(port, LAUNCH, {"params": {
            "assetSelection": [{"path": ["bronze", "telemetry"]}], "partitionNames": days}})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        status = wait_backfill(port, launched["backfillId"], 400)
    # day 3 of the fixture ERRORs (a type flip) and no silver is in the run: bronze fails the run for it
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED"), status

    # One run covered the whole range (BackfillPolicy.multi_run), and it was a reprocessing run.
    runs = status["runs"]
    assert len(runs) == 1 and runs[0]["status"] == "FAILURE"
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
