"""What one small run costs against the history already ingested.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/history_cost.py --history 0,10000,100000

Against one local S3 server (moto) holding landing and warehouse, the history grows in steps
(0, then 10k, then 100k files of one record each, --per-day files per day folder
`events/YYYY/MM/DD/`) and after each step it times, --repeat times on a fresh day each:

  new file   `ingest` of 1 new file on a new day (what a sensor's run does)
  no-op      the same day again (nothing to ingest)
  status     `lake status` (source_status) of its default window, the 7 landing days up to the
             last run's (per-day listing and ledger rows; code without status_days: every day)

The history is built directly rather than ingested file by file: the landing objects are PUT,
and each history day gets one ledger commit (committed rows with the objects' ETags) and one
bronze commit (the file's row with its lineage columns), written with delta-rs into the tables
a first real ingest created. That is what a run reads: the listing, the ledger, bronze's
partitions. (Real history has more, smaller commits; Delta checkpoints bound what that adds.)
Which code runs is whatever `lake_assets` imports (PYTHONPATH): run it once on main's checkout
and once on this one for before -> after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FIRST_DAY = dt.date(2025, 1, 1)
RUN_DAY = dt.date(2026, 6, 1)   # new days for the timed runs, after all history
SOURCE = """
sources:
  events:
    path: events/
    format: json
    start_date: 2025-01-01
"""


def history_day(n: int, per_day: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=n // per_day)


def key(day: dt.date, n: int) -> str:
    return f"events/{day:%Y/%m/%d}/part-{n:07d}.json"


def put_history(landing: str, start: int, stop: int, per_day: int) -> dict[int, str]:
    """PUT files start..stop-1; returns their ETags."""
    from lake_assets import storage

    bucket = storage.split_uri(landing)[0]

    def put(n: int) -> tuple[int, str]:
        body = json.dumps({"id": n, "name": f"device-{n}", "reading": n * 0.5}).encode() + b"\n"
        got = storage.s3_client().put_object(Bucket=bucket, Key=key(history_day(n, per_day), n), Body=body)
        return n, got["ETag"].strip('"')

    with ThreadPoolExecutor(16) as pool:
        return dict(pool.map(put, range(start, stop)))


def write_history_tables(lake, etags: dict[int, str], per_day: int) -> None:
    """One ledger commit and one bronze commit per history day, in the tables' own schemas."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from lake_assets.core.layout import Layout
    from lake_assets.core.delta_meta import storage_options

    layout = Layout(lake.warehouse, "events")
    ledger_uri, bronze_uri = layout.ledger, layout.bronze
    ledger_schema = pa.schema(DeltaTable(ledger_uri, storage_options=storage_options(ledger_uri)).schema().to_arrow())
    bronze_schema = pa.schema(DeltaTable(bronze_uri, storage_options=storage_options(bronze_uri)).schema().to_arrow())
    now = dt.datetime.now(dt.timezone.utc)
    by_day: dict[dt.date, list[int]] = {}
    for n in sorted(etags):
        by_day.setdefault(history_day(n, per_day), []).append(n)
    for day, ns in by_day.items():
        uris = [f"{lake.landing}/{key(day, n)}" for n in ns]
        batch = f"history-{day}"
        ledger = {"uri": uris, "etag": [etags[n] for n in ns], "size": [40] * len(ns),
                  "landing_date": [day.isoformat()] * len(ns), "status": ["committed"] * len(ns),
                  "batch_id": [batch] * len(ns), "owner": ["history"] * len(ns), "claimed_at": [now] * len(ns),
                  "committed_at": [now] * len(ns), "records": [1] * len(ns), "malformed": [0] * len(ns),
                  "rescued": [0] * len(ns), "error": [None] * len(ns), "attempts": [1] * len(ns)}
        write_deltalake(ledger_uri, pa.table({f.name: pa.array(ledger[f.name], f.type) for f in ledger_schema},
                                             schema=ledger_schema), mode="append",
                        storage_options=storage_options(ledger_uri))
        rows = {"id": ns, "name": [f"device-{n}" for n in ns], "reading": [n * 0.5 for n in ns],
                "_rescued_data": [None] * len(ns), "_source_file": uris, "_line": [1] * len(ns),
                "_record": [None] * len(ns),
                "_ingested_at": [now] * len(ns), "_batch_id": [batch] * len(ns),
                "_landing_date": [day.isoformat()] * len(ns)}
        write_deltalake(bronze_uri, pa.table({f.name: pa.array(rows[f.name], f.type) for f in bronze_schema},
                                             schema=bronze_schema), mode="append",
                        storage_options=storage_options(bronze_uri))


def land(lake, day: dt.date, name: str) -> None:
    from lake_assets import storage

    storage.write_bytes(f"{lake.landing}/events/{day:%Y/%m/%d}/{name}.json",
                        b'{"id": -1, "name": "new", "reading": 1.5}\n')


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def child(args) -> None:
    """In the code under test: add the history files args.start..args.stop to this warehouse, then time."""
    import lake_assets
    from lake_assets import storage
    from lake_assets.config import parse_config
    from lake_assets.core import operations
    from lake_assets.core.bronze import ingest
    from lake_assets.core.layout import Layout
    from lake_assets.core.operations import source_status
    from lake_assets.engine import spark_session

    status_days = getattr(operations, "status_days", None)

    lake = parse_config(f"landing: {args.landing}\nwarehouse: {args.warehouse}\n{SOURCE}")
    source = lake.source("events")
    spark = spark_session()
    quiet = lambda message: None  # noqa: E731
    first = args.run_day - dt.timedelta(days=1)
    if not storage.exists(Layout(lake.warehouse, "events").ledger + "/_delta_log/00000000000000000000.json"):
        # A first real ingest creates the tables (schema, ledger, bronze) the history is written into.
        land(lake, first, f"first-{args.run_day}")
        ingest(spark, lake, source, [first.isoformat()], log=quiet)
    with open(args.etags) as f:
        etags = {int(n): e for n, e in json.load(f).items()}
    write_history_tables(lake, etags, args.per_day)
    times: dict[str, list[float]] = {"new file": [], "no-op": [], "status": []}
    for i in range(args.repeat):
        day = args.run_day + dt.timedelta(days=i)
        land(lake, day, f"new-{args.stop}-{i}")
        times["new file"].append(timed(lambda: ingest(spark, lake, source, [day.isoformat()], log=quiet)))
        times["no-op"].append(timed(lambda: ingest(spark, lake, source, [day.isoformat()], log=quiet)))
    # `lake status`'s default: the 7 landing days up to the last run's (older code: every day)
    days = status_days(None, day.isoformat(), day) if status_days else None
    times["status"].append(timed(lambda: source_status(spark, lake, source, *([days] if days else []))))
    print("RESULT " + json.dumps({"code": lake_assets.__file__, **{k: statistics.median(v) for k, v in times.items()}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="0,10000,100000", help="history sizes, ascending")
    parser.add_argument("--per-day", type=int, default=1000, help="history files per day folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", action="append", default=[],
                        help="NAME=CHECKOUT to time (repeatable; default: this checkout as 'this')")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--landing", "--warehouse", "--etags"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run-day", type=dt.date.fromisoformat, default=RUN_DAY, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = [int(x) for x in args.history.split(",")]
    codes = dict(c.split("=", 1) for c in args.code) or {"this": str(Path(__file__).resolve().parents[1])}

    from lake_assets.localstack import LocalS3

    results: dict[str, dict[int, dict]] = {name: {} for name in codes}
    with LocalS3() as s3, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **s3.apply_env()}
        s3.create_buckets("s3://hist-landing", *(f"s3://hist-{name}" for name in codes))
        have = 0
        for level, size in enumerate(sizes):
            t0 = time.perf_counter()
            etags = put_history("s3://hist-landing", have, size, args.per_day)
            print(f"history {size:>7}: {size - have} object(s) put in {time.perf_counter() - t0:.0f} s", flush=True)
            Path(tmp, "etags.json").write_text(json.dumps(etags))
            have = size
            for c, (name, checkout) in enumerate(codes.items()):
                # every (code, level) runs on days of its own, so no run sees another's new file as its own
                run_day = RUN_DAY + dt.timedelta(days=100 * c + 10 * level)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--landing", "s3://hist-landing",
                     "--warehouse", f"s3://hist-{name}", "--etags", str(Path(tmp, "etags.json")),
                     "--per-day", str(args.per_day), "--repeat", str(args.repeat), "--stop", str(size),
                     "--run-day", run_day.isoformat()],
                    env={**env, "PYTHONPATH": checkout}, capture_output=True, text=True, check=False)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    sys.exit(f"{name} at {size} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
                results[name][size] = json.loads(line[0][len("RESULT "):])
                print(f"  {name:>8} ({results[name][size].pop('code')}): "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in results[name][size].items()), flush=True)
    for name, rows in results.items():
        base = rows[sizes[0]]
        print(f"\n{name}: median of {args.repeat}, ratio to history {sizes[0]}")
        print(f"{'history files':>13}  " + "  ".join(f"{k:>16}" for k in base))
        for size, row in rows.items():
            print(f"{size:>13}  " + "  ".join(f"{v:7.2f} s ({v / base[k]:4.2f}x)" for k, v in row.items()))


if __name__ == "__main__":
    main()
