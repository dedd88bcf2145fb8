"""The foundation slice end to end: moto S3 + the embedded engine + a real Dagster instance,
bronze materialized for two partitions, read back with a second reader (delta-rs)."""

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from lake_assets import storage
from lake_assets.definitions import build_definitions
from lake_assets_tests.scenario_helpers import Lake, materialize, ndjson, read_delta

ROOT = Path(__file__).resolve().parents[1]

DAY1 = [
    {"event_id": "e1", "recorded_at": "2026-01-01T10:00:00Z", "device": {"id": "d1", "fw": {"major": 1}},
     "signals": [{"name": "temp", "value": 21.5}]},
    {"event_id": "e2", "recorded_at": "2026-01-01T11:30:00+01:00", "device": {"id": "d2", "fw": {"major": 2}},
     "signals": []},
]
DAY2 = [
    {"event_id": "e3", "recorded_at": "2026-01-02T09:00:00Z", "device": {"id": "d1", "fw": {"major": 1, "minor": 4}},
     "signals": [{"name": "temp", "value": 22, "unit": "C"}], "battery": 0.5},
]


def test_bronze_two_partitions_through_dagster(tmp_path, buckets):
    landing, warehouse = buckets
    a = f"{landing}/telemetry/2026/01/01/a.json"
    b = f"{landing}/telemetry/dt=2026-01-02/b.json.gz"
    storage.write_bytes(a, ndjson(DAY1[:1]) + b"{broken json\n" + ndjson(DAY1[1:]))
    storage.write_bytes(b, gzip.compress(ndjson(DAY2)))
    config = str(Lake(tmp_path, warehouse, landing=landing, format="json",
                      schema_hints="event_id STRING, recorded_at TIMESTAMP",
                      checks={"rescued_rate_error": 1.0, "malformed_rate_error": 1.0}).config)
    defs = build_definitions(config)
    instance = DagsterInstance.ephemeral()

    result, meta = materialize(defs, "2026-01-01", instance)
    assert result.success
    day1 = meta["bronze/telemetry"]
    assert (day1["files"].value, day1["rows"].value, day1["malformed"].value) == (1, 2, 1)
    assert [c.name for c in day1["dagster/column_schema"].schema.columns][:6] == \
        ["event_id", "recorded_at", "device.id", "device.fw.major", "signals[].name", "signals[].value"]

    result, meta = materialize(defs, "2026-01-02", instance)
    assert result.success
    day2 = meta["bronze/telemetry"]
    assert (day2["files"].value, day2["rows"].value, day2["malformed"].value) == (1, 1, 0)
    assert "device.fw.minor bigint" in day2["schema_change"].value and "battery double" in day2["schema_change"].value

    table = read_delta(f"{warehouse}/bronze/telemetry").sort_values(["_landing_date", "_line"])
    assert list(table["event_id"]) == ["e1", "e2", "e3"]
    assert list(table["_source_file"]) == [a, a, b]
    assert list(table["_line"]) == [1, 3, 1]
    assert list(table["_landing_date"]) == ["2026-01-01", "2026-01-01", "2026-01-02"]
    assert [str(t) for t in table["recorded_at"]] == ["2026-01-01 10:00:00+00:00", "2026-01-01 10:30:00+00:00",
                                                      "2026-01-02 09:00:00+00:00"]
    assert [d["fw"]["minor"] for d in table["device"]] == [None, None, 4]
    assert [list(s) for s in table["signals"]][2] == [{"name": "temp", "value": 22.0, "unit": "C"}]
    assert table["battery"].tolist()[2] == 0.5 and table["battery"].isna().tolist()[:2] == [True, True]
    assert table["_rescued_data"].isna().all()
    assert table["_batch_id"].nunique() == 2 and table["_ingested_at"].notna().all()
    assert {"_source_file", "_ingested_at", "_batch_id", "_landing_date", "_rescued_data"} <= set(table.columns)

    quarantine = read_delta(f"{warehouse}/bronze/telemetry__quarantine")
    assert quarantine[["_source_file", "_line", "_raw"]].values.tolist() == [[a, 2, "{broken json"]]

    # A rerun of a partition changes nothing, and its materialization still shows what the day holds.
    result, meta = materialize(defs, "2026-01-01", instance)
    again = meta["bronze/telemetry"]
    assert result.success and (again["new_files"].value, again["files"].value, again["rows"].value) == (0, 1, 2)
    assert len(read_delta(f"{warehouse}/bronze/telemetry")) == 3


def test_empty_partition_succeeds_with_zero_files(tmp_path, buckets):
    landing, warehouse = buckets
    config = str(Lake(tmp_path, warehouse, landing=landing).config)
    result, meta = materialize(build_definitions(config), "2026-01-05", DagsterInstance.ephemeral())
    assert result.success and meta["bronze/telemetry"]["files"].value == 0


def _lake(config, *args, env=None):
    return subprocess.run([sys.executable, "-m", "lake_assets.cli", "--config", config, *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_missing_bucket_and_unreachable_endpoint_give_one_clear_message(tmp_path, local_s3):
    config = str(Lake(tmp_path, "s3://no-such-lake", landing="s3://no-such-landing").config)
    out = _lake(config, "ingest", "telemetry", "--date", "2026-01-01")
    assert out.returncode == 2
    assert "landing bucket 'no-such-landing' does not exist" in out.stderr and "Traceback" not in out.stderr

    env = {**local_s3.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "PATH": ""}
    env["AWS_MAX_ATTEMPTS"] = "1"
    out = _lake(config, "ingest", "telemetry", "--date", "2026-01-01", env=env)
    assert out.returncode == 2
    assert "cannot reach S3 at http://127.0.0.1:9" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("target", [["-m", "lake_assets.definitions"], ["-w", "workspace.yaml"]])
def test_dagster_definitions_validate(target):
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", *target],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_error_check_blocks_downstream_assets(tmp_path, buckets):
    landing, warehouse = buckets
    storage.write_bytes(f"{landing}/ev/2026/01/01/a.json", ndjson([{"id": 1, "n": 1}]))
    storage.write_bytes(f"{landing}/ev/2026/01/02/b.json", ndjson([{"id": 2, "n": "two"}]))
    config = str(Lake(tmp_path, warehouse, landing=landing, source="ev", checks={"rescued_rate_error": 0.5},
                      silver="  ids:\n    from: ev\n    select: [id]\n    mode: append\n").config)
    defs = build_definitions(config)
    instance = DagsterInstance.ephemeral()
    result, meta = materialize(defs, "2026-01-01", instance)
    assert result.success and set(meta) == {"bronze/ev", "silver/ids"}
    result, meta = materialize(defs, "2026-01-02", instance)  # 1 of 1 rows rescued: ERROR
    assert not result.success and set(meta) == {"bronze/ev"}
    assert len(read_delta(f"{warehouse}/bronze/ev")) == 2          # bronze keeps every row
    assert read_delta(f"{warehouse}/silver/ids")["id"].tolist() == [1]  # silver never saw day 2
