"""Real landing shapes end to end through `ingest` (embedded engine), read back with delta-rs:
Firehose concatenated objects, one document / array per file, BOM and CR-only files, NaN,
CloudTrail `{"Records": [...]}` .json.gz with digest files, a DynamoDB export (data/*.json.gz +
manifests + checksums) as AWS documents it, GitHub-style payloads with empty values. Every test
counts the records written against the rows in bronze plus quarantine and compares values."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from lake_assets_tests.scenario_helpers import Lake

MODES = ["addNewColumns", "rescue", "failOnNewColumns", "none"]
DAY = "2026-01-02"


pytestmark = pytest.mark.embedded   # `spark`: the embedded engine only (see conftest)


def _lake(root: Path, mode: str, **keys) -> Lake:
    return Lake(root, source="src", schema_evolution_mode=mode, **keys)


def _put(lake: Lake, key: str, body: bytes) -> None:
    lake.put(key, gzip.compress(body) if key.endswith(".gz") else body)


def _rows(lake: Lake, table: str = "bronze") -> list[dict]:
    frame = lake.frame(getattr(lake.layout, table))  # (not to_pyarrow_table: the exit-code trap in ENGINE.md)
    return [] if frame.empty else frame.sort_values(["_source_file", "_line"]).to_dict("records")


def _null(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))  # pandas reads null strings as NaN


FIREHOSE = [{"id": i, "event": {"kind": "click" if i % 2 else "view", "ms": i * 10}} for i in range(6)]


@pytest.mark.parametrize("mode", MODES)
def test_firehose_concatenated_documents_and_arrays_land_every_record_once(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode)
    _put(lake, "2026/01/02/00/fh-1", b"".join(json.dumps(r).encode() for r in FIREHOSE[:3]))  # {..}{..}
    _put(lake, "2026/01/02/01/fh-2", b"\n".join(json.dumps(r, indent=2).encode() for r in FIREHOSE[3:]))
    _put(lake, "2026/01/02/array.json", json.dumps([{"id": 10}, {"id": 11, "event": {"kind": "x"}}]).encode())
    _put(lake, "2026/01/02/bom.json", b"\xef\xbb\xbf" + b'{"id":20}\n{"id":21}\n')
    _put(lake, "2026/01/02/cr.json", b'{"id":30}\r{"id":31}\r{"id":32}')
    _put(lake, "2026/01/02/nan.json", b'{"id":40,"score":NaN}\n{"id":41,"score":-Infinity}\n{"id":42,"score":1.5}\n')
    _put(lake, "2026/01/02/bad.json", b'{"id":50}\n{"id":\n')
    result = lake.ingest_with(spark, DAY)
    rows, bad = _rows(lake), _rows(lake, "quarantine")
    assert len(rows) + len(bad) == 6 + 2 + 2 + 3 + 3 + 2 and len(bad) == 1
    assert result.records == len(rows) and result.malformed == 1
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == [0, 1, 2, 3, 4, 5, 10, 11, 20, 21, 30, 31, 32, 40, 41, 42, 50]
    assert [by_id[i]["event"]["kind"] for i in range(6)] == [r["event"]["kind"] for r in FIREHOSE]
    assert math.isnan(by_id[40]["score"]) and by_id[41]["score"] == -math.inf and by_id[42]["score"] == 1.5
    assert all(_null(r["_rescued_data"]) for r in rows)
    # lineage: NDJSON keeps its lines; the other framings number records by position
    fh1 = sorted((r["_line"], r["_record"]) for r in rows if r["_source_file"].endswith("fh-1"))
    assert fh1 == [(1, 0), (2, 1), (3, 2)]
    assert {(r["_line"], math.isnan(r["_record"])) for r in rows if r["_source_file"].endswith("bom.json")} == {
        (1, True), (2, True)}  # (pandas reads the null _record as NaN)
    assert bad[0]["_line"] == 2 and bad[0]["_raw"] == '{"id":'
    again = lake.ingest_with(spark, DAY, reprocess=True)  # exactly once on rerun
    assert again.records == len(rows) and len(_rows(lake)) == len(rows)


CLOUDTRAIL = [{"eventVersion": "1.08", "eventTime": f"2026-01-02T0{i}:00:00Z", "eventName": "PutObject",
               "userIdentity": {"type": "IAMUser", "accountId": "123456789012"},
               "requestParameters": {"bucketName": "b", "tags": [{"k": "a"}] if i == 1 else []},
               "resources": [{"ARN": "arn:aws:s3:::b", "type": "AWS::S3::Bucket"}]} for i in range(5)]


@pytest.mark.parametrize("mode", MODES)
def test_cloudtrail_records_are_rows_and_digest_files_are_skipped(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode, records_path="Records")
    base = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/01/02/"
    name = "123456789012_CloudTrail_us-east-1_20260102T0000Z_{}.json.gz"
    _put(lake, base + name.format("a"), json.dumps({"Records": CLOUDTRAIL[:3]}, indent=1).encode())
    _put(lake, base + name.format("b"), json.dumps({"Records": CLOUDTRAIL[3:]}).encode())
    _put(lake, "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2026/01/02/"
         "123456789012_CloudTrail-Digest_us-east-1_x_20260102T0000Z.json.gz",
         json.dumps({"awsAccountId": "123456789012", "digestStartTime": "x", "logFiles": []}).encode())
    _put(lake, base + "not-an-envelope.json.gz", b'{"eventName":"x"}')
    result = lake.ingest_with(spark, DAY)
    rows, bad = _rows(lake), _rows(lake, "quarantine")
    assert len(rows) == 5 and len(bad) == 1 and "no array at records_path Records" in bad[0]["_error"]
    assert result.skipped_unselected == 1  # the digest file
    assert sorted(r["eventTime"] for r in rows) == sorted(r["eventTime"] for r in CLOUDTRAIL)
    assert all(_null(r["_rescued_data"]) for r in rows)  # empty tags: no conflict
    tagged = [r for r in rows if r["eventTime"].startswith("2026-01-02T01")][0]
    assert [t["k"] for t in tagged["requestParameters"]["tags"]] == ["a"]
    assert sorted(r["_record"] for r in rows) == [0, 0, 1, 1, 2]


def _ddb_item(i: int) -> dict:
    item = {"pk": {"S": f"user#{i}"}, "age": {"N": str(18 + i)}, "balance": {"N": f"{i}.25"},
            "active": {"BOOL": i % 2 == 0}, "nick": {"NULL": True},
            "address": {"M": {"city": {"S": "Oslo"}, "zip": {"N": "150"}}},
            "tags": {"SS": ["a", "b"]}, "scores": {"NS": ["1", "2"]}, "hist": {"L": [{"N": "1"}, {"S": "x"}]}}
    return {"Item": item}


@pytest.mark.parametrize("mode", MODES)
def test_dynamodb_export_unmarshals_items_and_skips_manifests(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode, format="dynamodb", path="src/AWSDynamoDB/*/data/")
    export = "AWSDynamoDB/01767000000000-abcdef12/"
    # as AWS documents an export to S3: data/*.json.gz (one {"Item": ...} per line), manifests, checksums
    _put(lake, export + "data/aaaa.json.gz", b"\n".join(json.dumps(_ddb_item(i)).encode() for i in range(3)) + b"\n")
    _put(lake, export + "data/bbbb.json.gz", json.dumps(_ddb_item(3)).encode() + b'\n{"Item":{"pk":{"Q":1}}}\n')
    _put(lake, export + "manifest-summary.json", json.dumps({"version": "2020-06-30", "itemCount": 5}).encode())
    _put(lake, export + "manifest-summary.md5", b"abc")
    _put(lake, export + "manifest-files.json", json.dumps({"itemCount": 3, "dataFileS3Key": "x"}).encode())
    _put(lake, export + "manifest-files.md5", b"abc")
    _put(lake, export + "_started", b"")
    _put(lake, export + "data/aaaa.checksum", b"abc")
    for f in Path(lake.landing).rglob("*"):
        if f.is_file():  # the landing day comes from the objects' time (the keys carry no date)
            import os
            os.utime(f, (1767312000, 1767312000))  # 2026-01-02 00:00 UTC
    result = lake.ingest_with(spark, DAY)
    rows, bad = _rows(lake), _rows(lake, "quarantine")
    assert len(rows) == 4 and len(bad) == 1 and "unknown type tag" in bad[0]["_error"]
    row = {r["pk"]: r for r in rows}["user#1"]
    assert (row["age"], row["balance"], row["active"], row["address"]["city"], row["address"]["zip"]) == (
        19, 1.25, False, "Oslo", 150)
    assert list(row["tags"]) == ["a", "b"] and list(row["scores"]) == [1, 2] and "nick" not in row
    assert json.loads(row["_rescued_data"])["hist[1]"] == "x"  # a list of N then S: the S is a conflict
    assert result.skipped_unselected == 6
    assert [r["_line"] for r in sorted(rows, key=lambda r: (r["_source_file"], r["_line"]))] == [1, 2, 3, 1]


def test_a_path_matching_nothing_warns_naming_the_pattern(spark, tmp_path):
    lake = _lake(tmp_path, "addNewColumns", path="src/AWSDynamoDB/*/data/")
    _put(lake, "AWSDynamoDB/0176-ab/manifest-summary.json", b"{}")  # no data/ folder: nothing matches
    said = []
    result = lake.ingest_with(spark, DAY, log=said.append)
    assert result.records == 0 and any("warning" in s and "AWSDynamoDB/*/data/" in s for s in said)


@pytest.mark.parametrize("mode", MODES)
def test_github_payloads_with_empty_values_and_numbers_for_strings_are_not_rescued(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode, schema_hints="pusher.id STRING", include=["*.json"])
    day1 = [{"action": "opened", "labels": [], "assignees": [], "pusher": {"id": "u1"}, "head": {}, "n": 1},
            {"action": "closed", "labels": [{"name": "bug"}], "assignees": [], "pusher": {"id": 1700000000},
             "head": {}, "n": 2, "draft": True}]
    _put(lake, "2026/01/02/payloads.json", b"\n".join(json.dumps(r).encode() for r in day1))
    _put(lake, "2026/01/02/_SUCCESS", b"")
    _put(lake, "2026/01/02/notes.txt", b"not data")
    result = lake.ingest_with(spark, DAY)
    rows = _rows(lake)
    assert len(rows) == 2 and result.skipped_unselected == 2
    assert all(_null(r["_rescued_data"]) for r in rows)
    assert [r["pusher"]["id"] for r in rows] == ["u1", "1700000000"]  # a number for a STRING: its JSON text
    assert [list(x["name"] for x in r["labels"]) for r in rows] == [[], ["bug"]]
    assert "assignees" not in rows[0] and "head" not in rows[0]  # seen only empty: waits for a value


def test_on_s3_bronze_and_the_sensor_select_the_same_objects_of_a_glob_path(spark, tmp_path, buckets, local_s3):
    from dagster import DagsterInstance, build_sensor_context

    from lake_assets.definitions import build_definitions
    from lake_assets.orchestration.resources import LakeResource

    landing, warehouse = buckets
    today = __import__("datetime").datetime.now(__import__("datetime").timezone.utc).date()
    lake = Lake(tmp_path, warehouse, landing=landing, source="users", path="exports/AWSDynamoDB/*/data/",
                format="dynamodb", start_date=today.isoformat())
    path = str(lake.config)
    client, bucket = local_s3.client(), landing[5:]
    export = "exports/AWSDynamoDB/01767000000000-abcdef12/"
    client.put_object(Bucket=bucket, Key=export + "data/aaaa.json.gz",
                      Body=gzip.compress(b"\n".join(json.dumps(_ddb_item(i)).encode() for i in range(5))))
    for name in ("manifest-summary.json", "manifest-summary.md5", "manifest-files.json", "manifest-files.md5",
                 "_started", "data/aaaa.checksum"):
        client.put_object(Bucket=bucket, Key=export + name, Body=b"{}")
    client.put_object(Bucket=bucket, Key="exports/AWSDynamoDB/other.json", Body=b"{}")  # outside the glob

    defs = build_definitions(path)
    context = build_sensor_context(instance=DagsterInstance.ephemeral(), definitions=defs,
                                   resources={"lake_resource": LakeResource(config_path=path)})
    requested = defs.get_sensor_def("bronze_users_files")(context).run_requests
    assert [r.tags["lake/files"] for r in requested] == ["1"]  # only the data file starts a run

    result = lake.ingest_with(spark, today.isoformat())
    assert (result.files, result.records, result.skipped_unselected) == (1, 5, 7)
    frame = lake.frame(lake.bronze_path)
    assert sorted(frame["pk"]) == [f"user#{i}" for i in range(5)] and sorted(frame["age"]) == [18, 19, 20, 21, 22]


@pytest.mark.parametrize("mode", MODES)
def test_hive_style_folders_become_typed_columns(spark, tmp_path, mode):
    lake = _lake(tmp_path, mode, partition_columns=["customer_id", "dt", "region"],
                           schema_hints="dt DATE")
    _put(lake, "customer_id=40/dt=2026-01-02/a.json", b'{"id":1}\n{"id":2,"region":"eu"}\n')
    _put(lake, "customer_id=41/dt=2026-01-02/region=us/b.json", b'{"id":3}\n')
    _put(lake, "customer_id=abc/dt=2026-01-02/c.json", b'{"id":4}\n')  # not a number: rescued, not lost
    result = lake.ingest_with(spark, DAY)
    rows = _rows(lake)
    assert result.records == 4 == len(rows)
    got = {r["id"]: (r["customer_id"], str(r["dt"]), None if _null(r["region"]) else r["region"]) for r in rows}
    assert {k: v for k, v in got.items() if k != 4} == {
        1: (40, "2026-01-02", None), 2: (40, "2026-01-02", "eu"), 3: (41, "2026-01-02", "us")}
    row4 = [r for r in rows if r["id"] == 4][0]
    assert math.isnan(row4["customer_id"]) and json.loads(row4["_rescued_data"])["customer_id"] == "abc"
    from lake_assets.core import tables

    schema = tables.schema_or_none(spark, lake.layout.bronze)
    assert {f.name: f.dataType.simpleString() for f in schema.fields if f.name in ("customer_id", "dt", "region")} == {
        "customer_id": "bigint", "dt": "date", "region": "string"}


@pytest.mark.parametrize("mode", MODES)
def test_a_new_field_in_framed_records_follows_the_evolution_mode(spark, tmp_path, mode):
    from lake_assets.core.bronze import NewColumnsError

    lake = _lake(tmp_path, mode, records_path="Records")
    day1 = {"Records": [{"id": 1, "a": {"x": 1}}, {"id": 2, "a": {"x": 2}}]}
    _put(lake, "2026/01/01/ct.json.gz", json.dumps(day1, indent=2).encode())
    lake.ingest_with(spark, "2026-01-01")
    day2 = [{"Records": [{"id": 3, "a": {"x": 3, "new": "n3"}}]}, {"Records": [{"id": 4, "a": {"x": 4}, "top": 7}]}]
    _put(lake, "2026/01/02/ct.json", b"".join(json.dumps(d).encode() for d in day2))  # concatenated envelopes
    if mode == "failOnNewColumns":
        with pytest.raises(NewColumnsError, match="a.new"):
            lake.ingest_with(spark, DAY)
        assert len(_rows(lake)) == 2  # nothing written for the batch
        return
    result = lake.ingest_with(spark, DAY)
    rows = {r["id"]: r for r in _rows(lake)}
    assert len(rows) == 4 and result.records == 2 and not _rows(lake, "quarantine")
    new = [(rows[3]["_record"], rows[4]["_record"]), (rows[3]["_line"], rows[4]["_line"])]
    assert new == [(0, 1), (1, 2)]
    if mode == "addNewColumns":
        assert rows[3]["a"]["new"] == "n3" and rows[4]["top"] == 7 and _null(rows[3]["_rescued_data"])
    elif mode == "rescue":
        assert json.loads(rows[3]["_rescued_data"])["a.new"] == "n3"  # relative to the record, not Records[0]
        assert json.loads(rows[4]["_rescued_data"])["top"] == 7 and "top" not in rows[4]
    else:  # none: ignored, and listed
        assert _null(rows[3]["_rescued_data"]) and sorted(result.ignored_fields) == ["a.new string", "top bigint"]
