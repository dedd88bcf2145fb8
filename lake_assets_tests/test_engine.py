"""The engine resource: `spark_connect` reaches any Spark Connect endpoint by URL (here a second
Sail server standing in for a remote cluster), and bronze ingestion runs through it."""

import json

from pysail.spark import SparkConnectServer

from lake_assets.config import load_config
from lake_assets.core.bronze import Layout, ingest
from lake_assets.engine import is_embedded, spark_session
from lake_assets_tests.conftest import write_config


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
