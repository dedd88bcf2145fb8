"""Promoting a rescued field: column added, history backfilled, rescued JSON cleaned, schema
log and drift check updated, rerun a no-op."""

import datetime as dt
import json

import pytest

from lake_assets.config import load_config
from lake_assets.core import quality
from lake_assets.core.bronze import ingest
from lake_assets.core.layout import Layout
from lake_assets.core.promote import PromoteError, promote
from lake_assets.core.schema_log import SchemaLog
from lake_assets.engine import spark_session
from lake_assets_tests.scenario_helpers import write_config


def _land(root, day, records):
    path = root / "landing" / "ev" / day.replace("-", "/") / "part.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _rows(spark, lake):
    table = spark.read.format("delta").load(Layout(lake.warehouse, "ev").bronze)
    return {r["id"]: r for r in table.collect()}


def test_promote_moves_rescued_values_into_a_new_column(spark, tmp_path):
    config = write_config(tmp_path / "lake.yaml", "landing", "wh", """
        ev: {path: ev/, start_date: 2026-01-01, schema_evolution_mode: rescue}
    """)
    lake = load_config(config)
    source = lake.sources["ev"]
    _land(tmp_path, "2026-01-01", [{"id": 1, "a": {"x": 1}}])
    f2 = _land(tmp_path, "2026-01-02", [{"id": 2, "a": {"x": 2, "y": 5}, "z": "q"},
                                        {"id": 3, "a": {"x": 3, "y": "not a number"}}])
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark, lake, source, [day], log=lambda m: None)
    before = _rows(spark, lake)
    assert json.loads(before[2]["_rescued_data"]) == {"a.y": 5, "z": "q", "_file_path": f2}

    done = promote(spark, lake, source, "a.y", log=lambda m: None)
    assert (done.type, done.rows_moved, done.rows_left) == ("bigint", 1, 1)
    rows = _rows(spark, lake)
    assert rows[2]["a"]["y"] == 5 and json.loads(rows[2]["_rescued_data"]) == {"z": "q", "_file_path": f2}
    assert rows[3]["a"]["y"] is None and json.loads(rows[3]["_rescued_data"])["a.y"] == "not a number"
    assert rows[1]["a"]["y"] is None and rows[1]["_rescued_data"] is None
    assert len(rows) == 3 and rows[2]["_batch_id"] == before[2]["_batch_id"]

    log = SchemaLog(Layout(lake.warehouse, "ev").schemas)
    assert log.current().reason == "promoted a.y bigint" and log.accepted().version == log.current().version
    assert quality.schema_drift(Layout(lake.warehouse, "ev")).diff.empty

    # Rerun: nothing changes.
    again = promote(spark, lake, source, "a.y", log=lambda m: None)
    assert (again.rows_moved, again.schema_version) == (0, done.schema_version)

    # A top-level field, type inferred from the rescued values; the rescued column empties.
    promote(spark, lake, source, "z", log=lambda m: None)
    rows = _rows(spark, lake)
    assert rows[2]["z"] == "q" and rows[2]["_rescued_data"] is None

    # New files now fill the promoted column (mode rescue keeps the accepted schema, which has it).
    _land(tmp_path, "2026-01-03", [{"id": 4, "a": {"x": 4, "y": 9}, "z": "r"}])
    ingest(spark, lake, source, ["2026-01-03"], log=lambda m: None)
    rows = _rows(spark, lake)
    assert (rows[4]["a"]["y"], rows[4]["z"], rows[4]["_rescued_data"]) == (9, "r", None)


def test_promote_refuses_bad_requests(tmp_path):
    config = write_config(tmp_path / "lake.yaml", "landing", "wh", """
        ev: {path: ev/, start_date: 2026-01-01}
    """)
    lake = load_config(config)
    source, spark = lake.sources["ev"], spark_session()
    with pytest.raises(PromoteError, match="no bronze table yet"):
        promote(spark, lake, source, "a", log=lambda m: None)
    _land(tmp_path, "2026-01-01", [{"id": 1, "n": 1}, {"id": 2, "n": "two"}])
    ingest(spark, lake, source, ["2026-01-01"], log=lambda m: None)
    with pytest.raises(PromoteError, match="already a column of type bigint"):
        promote(spark, lake, source, "n", "STRING", log=lambda m: None)
    with pytest.raises(PromoteError, match="fields inside arrays"):
        promote(spark, lake, source, "s[0].x", log=lambda m: None)
    with pytest.raises(PromoteError, match="no rescued values for 'nothing'"):
        promote(spark, lake, source, "nothing", log=lambda m: None)
    assert json.loads(_rows(spark, lake)[2]["_rescued_data"])["n"] == "two"


def test_promote_job_runs_with_the_same_config(tmp_path):
    from dagster import DagsterInstance

    from lake_assets.definitions import build_definitions

    config = write_config(tmp_path / "lake.yaml", "landing", "wh", """
        ev: {path: ev/, start_date: 2026-01-01, schema_evolution_mode: rescue}
    """)
    lake = load_config(config)
    _land(tmp_path, "2026-01-01", [{"id": 1}])
    # a double the engine's from_json would round (…977): promoted values are typed in Python
    _land(tmp_path, "2026-01-02", [{"id": 2, "extra": 0.24148370569169975, "at": "2026-01-01T10:00:00+02:00"}])
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark_session(), lake, lake.sources["ev"], [day], log=lambda m: None)
    job = build_definitions(config).resolve_job_def("promote_rescued_field")
    result = job.execute_in_process(instance=DagsterInstance.ephemeral(), run_config={
        "ops": {"promote_rescued_field_op": {"config": {"source": "ev", "path": "extra", "type": "DOUBLE"}}}})
    assert result.success
    rows = _rows(spark_session(), lake)
    assert json.loads(rows[2]["_rescued_data"])["at"]
    # exact in the table (delta-rs reads it; Sail's Delta scan answers a file whose column holds
    # one value from the statistics, parsed with the same rounding as its from_json)
    from deltalake import DeltaTable

    stored = DeltaTable(Layout(lake.warehouse, "ev").bronze).to_pandas()
    assert stored.loc[stored["id"] == 2, "extra"].tolist() == [0.24148370569169975]
    promote(spark_session(), lake, lake.sources["ev"], "at", "TIMESTAMP", log=lambda m: None)
    rows = _rows(spark_session(), lake)
    assert (rows[2]["at"], rows[2]["_rescued_data"]) == (dt.datetime(2026, 1, 1, 8), None)
    bad = job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False, run_config={
        "ops": {"promote_rescued_field_op": {"config": {"source": "ev", "path": "id", "type": "STRING"}}}})
    assert not bad.success


def test_promote_refuses_an_existing_column_and_accepts_no_unrelated_drift(tmp_path):
    rescue = write_config(tmp_path / "rescue.yaml", "landing", "wh", """
        ev: {path: ev/, start_date: 2026-01-01, schema_evolution_mode: rescue}
    """)
    grow = write_config(tmp_path / "grow.yaml", "landing", "wh", """
        ev: {path: ev/, start_date: 2026-01-01}
    """)
    spark = spark_session()
    _land(tmp_path, "2026-01-01", [{"id": 1, "n": 1}])
    _land(tmp_path, "2026-01-02", [{"id": 2, "n": "two", "y": 5}])
    _land(tmp_path, "2026-01-03", [{"id": 3, "n": 3, "w": True}])
    lake = load_config(rescue)
    for day in ("2026-01-01", "2026-01-02"):
        ingest(spark, lake, lake.sources["ev"], [day], log=lambda m: None)
    lake = load_config(grow)   # the source switches to addNewColumns: day 3 adds w, unaccepted
    ingest(spark, lake, lake.sources["ev"], ["2026-01-03"], log=lambda m: None)

    with pytest.raises(PromoteError, match="n is already a column of type bigint; nothing to promote"):
        promote(spark, lake, lake.sources["ev"], "n", log=lambda m: None)
    done = promote(spark, lake, lake.sources["ev"], "y", log=lambda m: None)
    assert (done.rows_moved, _rows(spark, lake)[2]["y"]) == (1, 5)
    drift = quality.schema_drift(Layout(lake.warehouse, "ev")).diff
    assert (drift.added, drift.removed, drift.retyped) == (["w boolean"], [], [])
