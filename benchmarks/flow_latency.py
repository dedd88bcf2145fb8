"""End-to-end latency under a real Dagster daemon + webserver, on the demo lake (local folders).

    .venv/bin/python benchmarks/flow_latency.py [--days 31] [--code DIR ...]

1. sensor: 4 demo files land for one day, the `bronze_telemetry_files` sensor is started; measured:
   landing -> bronze run finished (its run's own duration too) -> gold materialized for the day
   (by declarative automation, where the code has it; the before state has none and stops at bronze).
2. backfill: --days days of demo data, one partition backfill of every asset launched as the UI
   does (GraphQL); measured: launch -> backfill done, and the runs it took.

--code runs the scenarios against other checkouts of lake_assets instead of this one (repeatable;
`--code . --code /path/to/before` prints this one beside an older state). Sensor and automation ticks come
every 30 s at most, so part of each figure is waiting for a tick.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lake_assets_tests.dagster_server import LAUNCH, dagster_running, graphql, wait_backfill  # noqa: E402

DAGSTER_YAML = "concurrency:\n  pools:\n    default_limit: 1\n"
START = dt.date(2026, 11, 1)


def _lake(folder: Path, days: int) -> str:
    """The demo lake.yaml over local folders, with `days` days of demo data landed."""
    from lake_assets.config import DEMO_CONFIG
    from lake_assets.demo.data import land_demo_data

    folder.mkdir(parents=True)
    text = DEMO_CONFIG.read_text().replace("s3://lake-landing", "landing").replace("s3://lake-warehouse", "warehouse")
    (folder / "lake.yaml").write_text(text)
    land_demo_data(str(folder / "landing"), START, days=days, records_per_day=200)
    return str(folder / "lake.yaml")


def _instance(env: dict):
    import os

    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    return DagsterInstance.get()


def _materialized(instance, key: list[str], day: str) -> bool:
    from dagster import AssetKey, AssetRecordsFilter

    return bool(instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[day]),
                                                limit=1).records)


def sensor_flow(code: Path, work: Path, timeout: float = 600) -> dict:
    config = _lake(work / "lake", 1)
    day = START.isoformat()
    out: dict = {}
    # Dagster puts its working directory first on sys.path: start it in `code`.
    with contextlib.chdir(code), \
            dagster_running(config, work / "home", {"PYTHONPATH": str(code)}, DAGSTER_YAML) as (port, env):
        instance = _instance(env)
        subprocess.run([str(Path(sys.executable).parent / "dagster"), "sensor", "start", "-m",
                        "lake_assets.definitions", "bronze_telemetry_files"], env=env, check=True,
                       capture_output=True, cwd=code)
        t0 = time.monotonic()
        has_gold = "automation" in (code / "lake_assets" / "config.py").read_text()
        while time.monotonic() - t0 < timeout:
            runs = [r for r in instance.get_run_records() if r.dagster_run.tags.get("dagster/sensor_name")]
            done = [r for r in runs if r.dagster_run.is_finished]
            if done and "bronze_s" not in out:
                out["bronze_s"] = time.monotonic() - t0
                out["bronze_run_s"] = done[0].end_time - done[0].start_time
                out["bronze_run"] = done[0].dagster_run.status.value
                if not has_gold:
                    break
            if "bronze_s" in out and _materialized(instance, ["gold", "daily_device_stats"], day):
                out["gold_s"] = time.monotonic() - t0
                break
            time.sleep(0.5)
    return out


def backfill(code: Path, work: Path, days: int, timeout: float = 3600) -> dict:
    config = _lake(work / "lake", days)
    names = [(START + dt.timedelta(days=i)).isoformat() for i in range(days)]
    # Dagster puts its working directory first on sys.path: start it in `code`.
    with contextlib.chdir(code), \
            dagster_running(config, work / "home", {"PYTHONPATH": str(code)}, DAGSTER_YAML) as (port, env):
        t0 = time.monotonic()
        launched = graphql(port, LAUNCH, {"params": {"partitionNames": names,
                                                     "assetSelection": [{"path": p} for p in (
                                                         ["bronze", "telemetry"], ["silver", "telemetry_events"],
                                                         ["silver", "devices"], ["gold", "daily_device_stats"])]}})
        status = wait_backfill(port, launched["launchPartitionBackfill"]["backfillId"], timeout)
        return {"backfill_s": time.monotonic() - t0, "status": status["status"], "runs": len(status["runs"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--code", action="append", default=[], help="a checkout to measure (repeatable; default: this one)")
    args = parser.parse_args()
    results = {}
    for code in [Path(c).resolve() for c in args.code] or [ROOT]:
        with tempfile.TemporaryDirectory() as tmp:
            results[str(code)] = {**sensor_flow(code, Path(tmp) / "sensor"),
                                  **backfill(code, Path(tmp) / "backfill", args.days)}
        print(code, results[str(code)], flush=True)
    print(f"\n{'checkout':<40} {'sensor->bronze':>15} {'bronze run':>11} {'->gold':>8} "
          f"{f'{args.days}-day backfill':>17} {'runs':>5}")
    for code, r in results.items():
        gold = f"{r['gold_s']:.0f} s" if "gold_s" in r else "never"
        print(f"{code:<40} {r.get('bronze_s', float('nan')):>13.0f} s {r.get('bronze_run_s', float('nan')):>9.0f} s "
              f"{gold:>8} {r['backfill_s']:>15.0f} s {r['runs']:>5}  ({r['status']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
