"""The file-arrival sensor against a real S3 API (moto): list calls per tick on a prefix with
thousands of objects, files that sort before the cursor, overwrites, restarts, notifications."""

import datetime as dt
import json
import urllib.request

import pytest
from dagster import DagsterInstance, build_sensor_context

from lake_assets import storage
from lake_assets.core.discovery import Cursor, detect_layout
from lake_assets.definitions import build_definitions
from lake_assets.orchestration.resources import LakeResource
from lake_assets_tests.scenario_helpers import Lake

TODAY = dt.datetime.now(dt.timezone.utc).date()
HISTORY_DAYS, FILES_PER_DAY = 40, 60


class ListCalls:
    """Counts ListObjectsV2 requests the S3 server receives (moto's request recorder)."""

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def _post(self, action):
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method="POST"))

    def __enter__(self):
        self._post("reset-recording")
        self._post("start-recording")
        return self

    def __exit__(self, *exc):
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/recorder/download-recording") as response:
            lines = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
        self._post("stop-recording")
        self.count = sum(1 for r in lines if "list-type=2" in (r.get("url") or "") + json.dumps(r.get("qs", {}))
                         or r.get("qs", {}).get("list-type") == ["2"])


def _put_many(s3, bucket, keys):
    client = s3.client()
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b'{"a": 1}\n')


def _day_key(day, name):
    return f"telemetry/{day:%Y/%m/%d}/{name}"


@pytest.fixture
def sensor_setup(tmp_path, buckets, local_s3):
    landing, warehouse = buckets
    start = TODAY - dt.timedelta(days=HISTORY_DAYS + 5)
    config = str(Lake(tmp_path, warehouse, landing=landing, start_date=start.isoformat(), lookback_days=2).config)
    defs = build_definitions(config)
    sensor = defs.get_sensor_def("bronze_telemetry_files")
    instance = DagsterInstance.ephemeral()

    def tick(cursor):
        context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                       resources={"lake_resource": LakeResource(config_path=config)})
        with ListCalls(local_s3.endpoint) as calls:
            result = sensor(context)
        return result, calls.count

    return landing, tick


def test_listing_sensor_costs_in_proportion_to_new_objects(sensor_setup, local_s3):
    landing, tick = sensor_setup
    bucket = landing[5:]
    history = [TODAY - dt.timedelta(days=d) for d in range(HISTORY_DAYS)]
    _put_many(local_s3, bucket, [_day_key(day, f"part-{i:03d}.json") for day in history for i in range(FILES_PER_DAY)])
    total = HISTORY_DAYS * FILES_PER_DAY

    # First tick: a sweep of the whole prefix (like includeExistingFiles), one run per day.
    result, calls = tick(None)
    assert calls == -(-total // 1000) + 1  # pages of 1,000 keys, plus delta-rs looking for the ledger
    assert sorted(r.partition_key for r in result.run_requests) == sorted(d.isoformat() for d in history)
    cursor = result.cursor
    assert Cursor.loads(cursor).layout == ["", "%Y/%m/%d"]

    # Nothing new: one LIST call (the two-day window), no runs.
    result, calls = tick(cursor)
    assert calls == 1 and result.run_requests == []
    cursor = result.cursor

    # New files, two of them sorting before keys already seen today, one overwriting a file.
    _put_many(local_s3, bucket, [_day_key(TODAY, "a-late.json"), _day_key(TODAY, "part-000b.json"),
                                 _day_key(TODAY, "zz-new.json")])
    local_s3.client().put_object(Bucket=bucket, Key=_day_key(TODAY, "part-001.json"), Body=b'{"a": 2}\n')
    result, calls = tick(cursor)
    assert calls == 1
    assert [r.partition_key for r in result.run_requests] == [TODAY.isoformat()]
    assert result.run_requests[0].tags["lake/files"] == "4"
    run_key = result.run_requests[0].run_key

    # A restart that re-evaluates from the same stored cursor asks for the same run (same run key).
    again, _ = tick(cursor)
    assert [r.run_key for r in again.run_requests] == [run_key]

    # After the new cursor, nothing is requested twice.
    result, calls = tick(result.cursor)
    assert result.run_requests == [] and calls == 1


def test_unreadable_cursor_falls_back_to_a_sweep(sensor_setup, local_s3):
    landing, tick = sensor_setup
    _put_many(local_s3, landing[5:], [_day_key(TODAY, "x.json")])
    result, _ = tick("{not json")
    assert [r.partition_key for r in result.run_requests] == [TODAY.isoformat()]


def test_sweep_skips_files_the_ledger_has_committed(tmp_path, buckets, local_s3):
    from lake_assets.config import load_config
    from lake_assets.core.bronze import ingest
    from lake_assets.engine import spark_session

    landing, warehouse = buckets
    day = TODAY - dt.timedelta(days=1)
    config = str(Lake(tmp_path, warehouse, landing=landing,
                      start_date=(TODAY - dt.timedelta(days=10)).isoformat()).config)
    _put_many(local_s3, landing[5:], [_day_key(day, "done.json")])
    lake = load_config(config)
    ingest(spark_session(), lake, lake.sources["telemetry"], [day.isoformat()], log=lambda m: None)
    _put_many(local_s3, landing[5:], [_day_key(day - dt.timedelta(days=5), "late-old-folder.json")])
    defs = build_definitions(config)
    context = build_sensor_context(instance=DagsterInstance.ephemeral(), definitions=defs,
                                   resources={"lake_resource": LakeResource(config_path=config)})
    result = defs.get_sensor_def("bronze_telemetry_files")(context)
    assert [(r.partition_key, r.tags["lake/files"]) for r in result.run_requests] == \
        [((day - dt.timedelta(days=5)).isoformat(), "1")]


def test_notification_sensor_reads_the_queue_and_deletes_after_recording(tmp_path, buckets, local_s3):
    import boto3

    landing, warehouse = buckets
    bucket = landing[5:]
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName=f"q-{bucket}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    local_s3.client().put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
                                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "telemetry/"}]}}}]})
    config = str(Lake(tmp_path, warehouse, landing=landing, start_date=(TODAY - dt.timedelta(days=10)).isoformat(),
                      use_notifications=True, queue_url=queue_url).config)
    defs = build_definitions(config)
    sensor = defs.get_sensor_def("bronze_telemetry_files")
    instance = DagsterInstance.ephemeral()

    def tick(cursor):
        return sensor(build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                           resources={"lake_resource": LakeResource(config_path=config)}))

    first = tick(None)  # empty landing: the first sweep finds nothing
    assert first.run_requests == []
    _put_many(local_s3, bucket, [_day_key(TODAY, "n1.json"), _day_key(TODAY, "sub dir/n 2.json"),
                                 "elsewhere/ignored.json"])
    second = tick(first.cursor)
    assert [(r.partition_key, r.tags["lake/files"]) for r in second.run_requests] == [(TODAY.isoformat(), "2")]
    held = Cursor.loads(second.cursor).pending_deletes
    assert len(held) >= 2  # received, not yet deleted: deleted once this cursor (and its runs) is stored
    third = tick(second.cursor)
    assert third.run_requests == [] and Cursor.loads(third.cursor).pending_deletes == []
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages",
                                                                         "ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"] == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_detect_layout():
    files = [storage.FileInfo(f"s3://b/t/{k}", 1, "e", dt.datetime.now(dt.timezone.utc))
             for k in ("dt=2026-01-01/a.json", "dt=2026-01-02/b.json")]
    assert detect_layout("s3://b/t", files) == ["dt=", "%Y-%m-%d"]
    mixed = files + [storage.FileInfo("s3://b/t/2026/01/03/c.json", 1, "e", dt.datetime.now(dt.timezone.utc))]
    assert detect_layout("s3://b/t", mixed) is None


def test_runs_are_bounded_by_max_files_per_run(tmp_path, buckets, local_s3):
    from lake_assets.config import load_config
    from lake_assets.core.bronze import ingest
    from lake_assets.engine import spark_session

    landing, warehouse = buckets
    config = str(Lake(tmp_path, warehouse, landing=landing, start_date=(TODAY - dt.timedelta(days=3)).isoformat(),
                      max_files_per_run=2).config)
    _put_many(local_s3, landing[5:], [_day_key(TODAY, f"f{i}.json") for i in range(5)])
    defs = build_definitions(config)
    context = build_sensor_context(instance=DagsterInstance.ephemeral(), definitions=defs,
                                   resources={"lake_resource": LakeResource(config_path=config)})
    requests = defs.get_sensor_def("bronze_telemetry_files")(context).run_requests
    assert [(r.partition_key, r.tags["lake/files"], r.tags["lake/max_batches"]) for r in requests] == \
        [(TODAY.isoformat(), "2", "1"), (TODAY.isoformat(), "2", "1"), (TODAY.isoformat(), "1", "1")]
    assert len({r.run_key for r in requests}) == 3

    # Each such run takes one bounded batch of the files not yet claimed.
    lake = load_config(config)
    loaded = [ingest(spark_session(), lake, lake.sources["telemetry"], [TODAY.isoformat()], max_batches=1,
                     log=lambda m: None).files for _ in requests]
    assert loaded == [2, 2, 1]
