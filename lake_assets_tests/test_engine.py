"""The engine resource: `spark_connect` reaches any Spark Connect endpoint by URL (here a second
Sail server standing in for a remote cluster), and bronze ingestion runs through it."""

import json

from pysail.spark import SparkConnectServer

from lake_assets.config import load_config
from lake_assets.core.bronze import ingest
from lake_assets.core.layout import Layout
from lake_assets.engine import is_embedded, spark_session
from lake_assets_tests.scenario_helpers import write_config


def test_spark_connect_engine_runs_bronze_against_a_remote_endpoint(tmp_path):
    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    host, port = server.listening_address
    config = write_config(tmp_path / "lake.yaml", "landing", "wh", """
        ev: {path: ev/, start_date: 2026-01-01}
    """, extra=f"engine: {{kind: spark_connect, remote: 'sc://{host}:{port}'}}\n")
    folder = tmp_path / "landing" / "ev" / "2026" / "01" / "01"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps({"id": 1, "tags": ["x"]}) + "\n")
    lake = load_config(config)
    spark = spark_session(lake.engine)
    try:
        assert spark is not spark_session() and not is_embedded(spark)  # not the embedded engine
        # (so the scan keeps nothing for the typed pass, which reads and parses the file again)
        result = ingest(spark, lake, lake.sources["ev"], ["2026-01-01"], log=lambda m: None)
        assert result.records == 1
        rows = spark.read.format("delta").load(Layout(lake.warehouse, "ev").bronze).select("id", "tags").collect()
        assert [(r["id"], r["tags"]) for r in rows] == [(1, ["x"])]
    finally:
        spark.stop()
        server.stop()


# ---------------------------------------------------------------- engine facts (each engine of conftest)

def test_timestamps_outside_the_nanosecond_range_read_back_in_delta_rs(spark, tmp_path):
    # Apache Spark writes INT96 Parquet timestamps by default; delta-rs reads them as nanoseconds,
    # which overflow before 1677: the engine module makes every session write microseconds.
    import datetime as dt

    from deltalake import DeltaTable

    uri = str(tmp_path / "t")
    early, late = dt.datetime(999, 1, 1, 12, 30), dt.datetime(2500, 6, 1)
    spark.sql("SELECT TIMESTAMP '0999-01-01 12:30:00' AS at UNION ALL SELECT TIMESTAMP '2500-06-01' AS at") \
        .write.format("delta").save(uri)
    got = sorted(v.replace(tzinfo=None) for v in DeltaTable(uri).to_pandas()["at"].tolist())
    assert got == [early, late]


def test_a_remote_read_is_planned_one_file_per_partition(spark, monkeypatch):
    # The server plans a Python data source's read on its driver: sizing it from that machine's
    # cores would leave a cluster's other executors idle.
    import os

    from lake_assets.core import reader

    files = [{"uri": f"/f{i}.json", "size": i} for i in range(12)]
    want = max(2, os.cpu_count() or 2) if is_embedded(spark) else 12
    assert reader.read_partitions(spark, files) == want
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # the option decides, not where planning runs
    planned = reader._ScanReader({"files": json.dumps(files), "partitions": "12"}).partitions()
    assert len(planned) == 12 and sorted(f["uri"] for p in planned for f in p.files) == sorted(f["uri"] for f in files)
