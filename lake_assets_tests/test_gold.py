"""Gold from silver (partitions replaced atomically, or full rebuild), the Dagster assets, and the demo config."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from lake_assets.config import parse_config
from lake_assets.core import gold, layout, silver, tables
from lake_assets.demo.data import land_demo_data
from lake_assets.orchestration.bronze import bronze_asset
from lake_assets.orchestration.resources import LakeResource
from lake_assets.orchestration.silver_gold import gold_asset, silver_asset
from lake_assets_tests.scenario_helpers import DAY1 as D1, DAY2 as D2, DAY3 as D3
from lake_assets_tests.scenario_helpers import Lake, pandas_rows, table_rows

SILVER = """\
  events:
    from: ev
    select: [id, seq, "payload.v AS v", "payload.n AS n"]
    keys: [id]
    sequence_by: seq
    mode: upsert
    expectations:
      has_id: {expr: "id IS NOT NULL", on_violation: quarantine}
      small: {expr: "n < 100", on_violation: warn}
"""
GOLD = """\
  totals:
    from: [events]
    sql: "SELECT v, count(*) AS events, sum(n) AS total FROM events GROUP BY v"
  overall:
    from: [events]
    partitioned: false
    sql: "SELECT count(*) AS events, sum(n) AS total FROM events"
"""


def test_gold_partitions_are_replaced_and_rebuilds_are_whole(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=SILVER, gold=GOLD, schema_hints="seq BIGINT")
    config = lake.lake_config
    totals, overall = layout.gold_uri(lake.warehouse, "totals"), layout.gold_uri(lake.warehouse, "overall")
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a", "n": 1}},
                             {"id": "2", "seq": 1, "payload": {"v": "a", "n": 2}}])
    lake.land(D2, "b.json", [{"id": "3", "seq": 1, "payload": {"v": "b", "n": 5}}])
    lake.ingest_with(spark, D1, D2)
    for day in (D1, D2):
        silver.run(spark, config, config.silver["events"], [day], log=lambda m: None)
    result = gold.run(spark, config, config.gold["totals"], [D1, D2], log=lambda m: None)
    assert result.rows_written == {D1: 1, D2: 1}
    cols = ["_partition_date", "v", "events", "total"]
    assert table_rows(spark, totals, cols) == [(D1, "a", 2, 3), (D2, "b", 1, 5)]

    # A late file on day 1 updates id 2 and adds id 4: recomputing day 1 replaces only that partition.
    lake.land(D1, "c.json", [{"id": "2", "seq": 2, "payload": {"v": "c", "n": 20}},
                             {"id": "4", "seq": 1, "payload": {"v": "a", "n": 4}}])
    lake.ingest_with(spark, D1)
    silver.run(spark, config, config.silver["events"], [D1], log=lambda m: None)
    gold.run(spark, config, config.gold["totals"], [D1], log=lambda m: None)
    gold.run(spark, config, config.gold["totals"], [D1, D3], log=lambda m: None)  # rerun; day 3 has no rows
    expected = [(D1, "a", 2, 5), (D1, "c", 1, 20), (D2, "b", 1, 5)]
    assert table_rows(spark, totals, cols) == expected
    assert pandas_rows(totals, cols) == expected

    result = gold.run(spark, config, config.gold["overall"], None, log=lambda m: None)
    assert (result.days, result.table_rows) == (None, 1)
    assert table_rows(spark, overall, ["events", "total"]) == [(4, 30)]
    gold.run(spark, config, config.gold["overall"], None, log=lambda m: None)
    assert pandas_rows(overall, ["events", "total"]) == [(4, 30)]


def test_gold_needs_its_silver_table(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=SILVER, gold=GOLD, schema_hints="seq BIGINT")
    config = lake.lake_config
    with pytest.raises(gold.GoldError, match="materialize silver/events first"):
        gold.run(spark, config, config.gold["totals"], [D1], log=lambda m: None)


@pytest.mark.embedded   # Dagster runs the lake config's engine: the embedded one
def test_dagster_assets_materialize_with_metadata(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=SILVER, gold=GOLD, schema_hints="seq BIGINT")
    config = lake.lake_config
    lake.land(D1, "a.json", [{"id": "1", "seq": 1, "payload": {"v": "a", "n": 1}},
                             {"seq": 2, "payload": {"v": "a", "n": 500}}])
    resources = {"lake_resource": LakeResource(config_path=str(lake.config))}
    ev = silver_asset(config, config.silver["events"])
    totals, overall = gold_asset(config, config.gold["totals"]), gold_asset(config, config.gold["overall"])
    defs = dg.Definitions(assets=[bronze_asset(config, config.source("ev")), ev, totals, overall], resources=resources)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(["silver", "events"])).parent_keys == {dg.AssetKey(["bronze", "ev"])}
    assert graph.get(dg.AssetKey(["gold", "totals"])).parent_keys == {dg.AssetKey(["silver", "events"])}
    assert ev.partitions_def.start.date() == dt.date(2026, 1, 1) and overall.partitions_def is None
    assert ev.group_names_by_key[ev.key] == "silver" and totals.group_names_by_key[totals.key] == "gold"

    result = dg.materialize([bronze_asset(config, config.source("ev")), ev, totals], partition_key=D1,
                            resources=resources)
    assert result.success
    meta = {m.asset_key.path[0]: m.metadata for m in result.get_asset_materialization_events()
            for m in [m.materialization]}
    assert meta["silver"]["rows_read"].value == 2 and meta["silver"]["rows_quarantined"].value == 1
    assert meta["silver"]["expectation/has_id/failed"].value == 1
    assert meta["silver"]["expectation/small/failed"].value == 1
    assert meta["silver"]["delta_version"].value >= 1
    assert "seq" in [c.name for c in meta["silver"]["dagster/column_schema"].schema.columns]
    assert meta["gold"]["table_rows"].value == 1
    assert "_partition_date" in [c.name for c in meta["gold"]["dagster/column_schema"].schema.columns]

    result = dg.materialize([overall], resources=resources, selection=[overall.key])
    assert result.success
    assert table_rows(spark, layout.gold_uri(lake.warehouse, "overall"), ["events", "total"]) == [(1, 1)]


@pytest.mark.embedded   # Dagster runs the lake config's engine: the embedded one
def test_dagster_fail_expectation_fails_the_run(spark, tmp_path):
    lake = Lake(tmp_path, source="ev", silver=SILVER.replace("on_violation: quarantine", "on_violation: fail"),
                schema_hints="seq BIGINT, id STRING")  # no record has an id
    config = lake.lake_config
    lake.land(D1, "a.json", [{"seq": 2, "payload": {"v": "a", "n": 5}}])
    lake.ingest_with(spark, D1)
    resources = {"lake_resource": LakeResource(config_path=str(lake.config))}
    result = dg.materialize([silver_asset(config, config.silver["events"])], partition_key=D1, resources=resources,
                            raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "'has_id' (1 of 1 rows)" in failure.description
    assert tables.schema_or_none(spark, layout.silver_uri(lake.warehouse, "events")) is None


def test_demo_config_runs_end_to_end(spark, tmp_path):
    demo = (Path(__file__).parent.parent / "lake_assets" / "demo" / "lake.yaml").read_text()
    demo = demo.replace("s3://lake-landing", str(tmp_path / "landing")).replace("s3://lake-warehouse",
                                                                                str(tmp_path / "wh"))
    lake = parse_config(demo)
    start = dt.date(2026, 11, 1)
    land_demo_data(str(tmp_path / "landing"), start, days=3, records_per_day=60)
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(3)]
    from lake_assets.core import bronze

    bronze.ingest(spark, lake, lake.source("telemetry"), days, log=lambda m: None)
    for day in days:  # day by day, as the daily partitions run
        events = silver.run(spark, lake, lake.silver["telemetry_events"], [day], log=lambda m: None)
        devices = silver.run(spark, lake, lake.silver["devices"], [day], log=lambda m: None)
        stats = gold.run(spark, lake, lake.gold["daily_device_stats"], [day], log=lambda m: None)
    # 180 distinct events; the 2 re-sent per day from day 2 on are deduplicated.
    assert events.table_rows == 180
    assert events.expectations["has_device"]["failed"] == 0
    device_ids = tables.read(spark, layout.Layout(lake.warehouse, "telemetry").bronze).select("device.id").distinct()
    assert devices.current_rows == device_ids.count() and devices.table_rows >= devices.current_rows
    assert stats.table_rows > 0
    total = tables.read(spark, layout.gold_uri(lake.warehouse, "daily_device_stats")).groupBy().sum("events").first()[0]
    assert total == 180
