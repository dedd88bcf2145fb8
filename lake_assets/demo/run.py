"""`lake demo` and `lake dev`: the bundled demo lake on a local S3 server, end to end."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from lake_assets.config import DEMO_CONFIG, load_config
from lake_assets.demo.data import land_demo_data
from lake_assets.localstack import LocalS3

DEMO_DAYS = 3


def start_demo_stack(days: int = DEMO_DAYS, records_per_day: int = 200) -> tuple[LocalS3, list[str], list[str]]:
    """A moto S3 server with the demo buckets and `days` days of telemetry ending today (UTC)."""
    os.environ.pop("LAKE_CONFIG", None)
    s3 = LocalS3().start()
    s3.apply_env()
    lake = load_config(DEMO_CONFIG)
    s3.create_buckets(lake.landing, lake.warehouse)
    first = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=days - 1)
    written = land_demo_data(lake.landing, first, days=days, records_per_day=records_per_day)
    partitions = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
    return s3, written, partitions


def run_demo() -> int:
    from dagster import DagsterInstance

    from lake_assets.definitions import build_definitions
    from lake_assets.engine import spark_session

    s3, written, partitions = start_demo_stack()
    lake = load_config(DEMO_CONFIG)
    print(f"local S3 at {s3.endpoint}: landed {len(written)} files under {lake.landing}/telemetry/ "
          f"for {partitions[0]}..{partitions[-1]}")
    defs = build_definitions(str(DEMO_CONFIG))
    job = defs.resolve_implicit_global_asset_job_def()
    instance = DagsterInstance.ephemeral()
    blocked = []
    for partition in partitions:
        result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False,
                                        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
        print(f"\n== partition {partition}: run {'succeeded' if result.success else 'stopped by a failed check'}")
        if not result.success:
            blocked.append(partition)
        for event in result.all_events:
            if event.event_type_value == "ASSET_MATERIALIZATION":
                mat = event.materialization
                meta = {k: v.value for k, v in mat.metadata.items()
                        if k in ("files", "rows", "malformed", "rescued_rows", "delta_version", "schema_version",
                                 "rows_written", "quarantined")}
                print(f"  materialized {mat.asset_key.to_user_string()}: {meta}")
            elif event.event_type_value == "ASSET_CHECK_EVALUATION":
                check = event.event_specific_data
                verdict = "passed" if check.passed else f"FAILED ({check.severity.value})"
                rate = {k: v.value for k, v in check.metadata.items() if k.endswith("_rate")}
                print(f"  check {check.asset_key.to_user_string()}:{check.check_name} {verdict} {rate}")
    spark = spark_session(lake.engine)
    print("\nDelta tables written:")
    for layer, names in (("bronze", list(lake.sources) + [f"{n}__quarantine" for n in lake.sources]),
                         ("silver", list(lake.silver)), ("gold", list(lake.gold))):
        for name in names:
            uri = f"{lake.warehouse}/{layer}/{name}"
            try:
                count = spark.read.format("delta").load(uri).count()
            except Exception:
                continue
            print(f"  {layer}/{name:<28} {count:>6} rows  {uri}")
    print(f"ingestion state (ledger, schema log): {lake.warehouse}/_state/")
    if blocked:
        print(f"\nBlocked: {', '.join(blocked)}. Bronze kept every row, but an ERROR check (here: device.fw.minor "
              f"arriving as a string, rescued in more than 10 % of rows) stopped silver and gold for that day — "
              f"write-audit-publish. Inspect with `lake schema history telemetry` and the rescued_data_rate "
              f"check's top_rescued_paths; raise checks.rescued_rate_error or fix the producer, then rerun the day.")
    s3.stop()
    return 0


DAGSTER_YAML = """\
# One run at a time per source pool (bronze assets use pool lake_bronze_<source>); the ledger keeps
# concurrent runs safe anyway, this just avoids them waiting on each other's claims.
concurrency:
  pools:
    default_limit: 1
"""


def run_dev(port: int = 3000) -> int:
    """The demo stack plus `dagster dev`, until Ctrl-C."""
    from pathlib import Path

    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".lake" / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    s3, written, partitions = start_demo_stack()
    print(f"local S3 at {s3.endpoint} with {len(written)} demo files ({partitions[0]}..{partitions[-1]}); "
          f"starting dagster dev on http://127.0.0.1:{port}")
    try:
        return subprocess.call([sys.executable, "-m", "dagster", "dev", "-m", "lake_assets.definitions",
                                "-h", "127.0.0.1", "-p", str(port)], env=os.environ.copy())
    except KeyboardInterrupt:
        return 0
    finally:
        s3.stop()
