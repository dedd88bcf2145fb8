"""One sensor per source: new landing files -> runs of bronze/<source> for their daily partitions."""

import datetime as dt

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from lake_assets import storage
from lake_assets.config import LakeConfig, SourceConfig
from lake_assets.core.bronze import batches
from lake_assets.core.discovery import Cursor, discover, run_key, s3_event_records
from lake_assets.core.layout import Layout
from lake_assets.core.partitions import landing_date
from lake_assets.core.selection import Selection
from lake_assets.orchestration.bronze import MAX_BATCHES_TAG, bronze_key
from lake_assets.orchestration.resources import LakeResource

MAX_MESSAGES_PER_TICK = 1000


def committed_files(ledger_uri: str) -> dict[str, str]:
    """{uri: etag} of committed files, read with delta-rs (no Spark in the sensor daemon)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lake_assets.core.delta_meta import storage_options

    try:
        table = DeltaTable(ledger_uri, storage_options=storage_options(ledger_uri))
    except TableNotFoundError:
        return {}
    frame = table.to_pandas(columns=["uri", "etag", "status"])
    frame = frame[frame["status"] == "committed"]
    return dict(zip(frame["uri"], frame["etag"]))


def _sqs():
    import boto3

    return boto3.client("sqs", region_name=storage.s3_client().meta.region_name)


def _from_notifications(context, source: SourceConfig, selection: Selection, cursor: Cursor) -> dict[str, list]:
    """Files named by the queue's S3 events. Messages are deleted one tick later: a tick's cursor is
    stored only with its run requests, so the handles in it belong to requests already recorded."""
    sqs = _sqs()
    for i in range(0, len(cursor.pending_deletes), 10):
        batch = cursor.pending_deletes[i:i + 10]
        sqs.delete_message_batch(QueueUrl=source.queue_url,
                                 Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(batch)])
    handles, files = [], {}
    while len(handles) < MAX_MESSAGES_PER_TICK:
        got = sqs.receive_message(QueueUrl=source.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=600).get("Messages", [])
        if not got:
            break
        for message in got:
            handles.append(message["ReceiptHandle"])
            for bucket, key, _ in s3_event_records(message["Body"]):
                uri = f"s3://{bucket}/{key}"
                if uri.startswith(selection.prefix.rstrip("/") + "/") and selection.selects(uri):
                    files[uri] = None
    cursor.pending_deletes = handles
    found: dict[str, list] = {}
    for f in _describe(list(files)):
        day = landing_date(f.uri[len(selection.prefix):], f.last_modified).isoformat()
        found.setdefault(day, []).append(f)
    context.log.info(f"{len(handles)} notification(s), {len(files)} file(s)")
    return found


def _describe(uris: list[str]) -> list[storage.FileInfo]:
    """Size, ETag and time of each object still there (HEAD); vanished objects are dropped."""
    out = []
    for uri in uris:
        bucket, key = uri[5:].split("/", 1)
        try:
            head = storage.s3_client().head_object(Bucket=bucket, Key=key)
        except Exception:
            continue
        out.append(storage.FileInfo(uri, head["ContentLength"], head["ETag"].strip('"'),
                                    head["LastModified"].astimezone(dt.timezone.utc)))
    return out


def bronze_sensor(lake: LakeConfig, source: SourceConfig):
    key = bronze_key(source.name)

    @sensor(name=f"bronze_{source.name}_files", minimum_interval_seconds=30, asset_selection=[key],
            default_status=DefaultSensorStatus.STOPPED,
            description=f"Requests bronze/{source.name} runs for the days of newly landed files "
                        f"({'S3 event notifications' if source.use_notifications else 'incremental listing'}, "
                        f"with a full sweep every {source.backfill_interval_hours:g} h).")
    def _sensor(context: SensorEvaluationContext, lake_resource: LakeResource) -> SensorResult:
        lake_now = lake_resource.lake()
        src = lake_now.source(source.name)
        selection = Selection.of(lake_now.landing, src)
        prefix = selection.prefix
        cursor = Cursor.loads(context.cursor)
        now = dt.datetime.now(dt.timezone.utc)
        found: dict[str, list] = {}
        if src.use_notifications:
            found = _from_notifications(context, src, selection, cursor)
        if not src.use_notifications or cursor.last_sweep is None or \
                now.timestamp() - cursor.last_sweep >= src.backfill_interval_hours * 3600:
            result = discover(prefix, cursor, now, lookback_days=src.lookback_days,
                              sweep_every=dt.timedelta(hours=src.backfill_interval_hours),
                              ingested=lambda: committed_files(Layout(lake_now.warehouse, src.name).ledger),
                              selects=selection.selects)
            pending = cursor.pending_deletes
            cursor = result.cursor
            cursor.pending_deletes = pending
            for day, files in result.new.items():
                found.setdefault(day, []).extend(files)
            for day, files in sorted(result.early.items()):
                context.log.info(f"{len(files)} new file(s) dated {day}, after today: requested once that day starts")
            context.log.info(f"listed {result.listed} object(s){' (sweep)' if result.swept else ''}")
        first, last = src.start_date.isoformat(), now.date().isoformat()
        requests = []
        for day, files in sorted(found.items()):
            if not first <= day <= last:
                context.log.warning(f"{len(files)} file(s) with landing date {day} are outside the partitions "
                                    f"{first}..{last}; not requested")
                continue
            unique = sorted({f.uri: f for f in files}.values(), key=lambda f: f.uri)
            for chunk in batches(unique, src.max_files_per_run, src.max_bytes_per_run):
                requests.append(RunRequest(partition_key=day, run_key=run_key(src.name, day, chunk),
                                           asset_selection=[key],
                                           tags={"lake/files": str(len(chunk)), MAX_BATCHES_TAG: "1"}))
        return SensorResult(run_requests=requests, cursor=cursor.dumps())

    return _sensor
