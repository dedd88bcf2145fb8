"""Scaled-down measurements behind docs/SCALE.md (1M files/day), each extrapolated linearly.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/scale_simulation.py [--files 10000,100000]

Measured here, on this machine, with the project's own code and delta-rs:
  cursor      the sensor cursor (core.discovery.Cursor) holding a digest per file of the look-back
              window: JSON bytes, dumps+loads time, for N files/day x lookback_days
  ledger      one day of N ledger rows written with delta-rs in the ledger's schema: bytes/row
  compaction  one day's ledger partition as the runs leave it (one live file per run of
              max_files_per_run files; a claim and a finish commit each), then DeltaTable.optimize.compact(): files before/after, time
  sqs         arithmetic only (no real SQS here): ticks, receives and deletes per day
  runs        arithmetic from max_files_per_run and a per-run fixed cost given on the command line
              (--run-overhead, e.g. from benchmarks/history_cost.py and a Dagster run's overhead)
Everything printed as "-> 1M/day" is an extrapolation from the measured sizes, not a measurement.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import tempfile
import time
import uuid

TARGET = 1_000_000   # files per day


def measure_cursor(files_per_day: int, lookback: int) -> dict:
    from lake_assets.core.discovery import Cursor, _digest

    today = dt.date(2026, 12, 1)
    known = {(today - dt.timedelta(days=d)).isoformat():
             {_digest(f"s3://landing/events/{today - dt.timedelta(days=d):%Y/%m/%d}/part-{n:07d}.json"):
              _digest(f"etag-{d}-{n}") for n in range(files_per_day)} for d in range(lookback)}
    cursor = Cursor(["", "%Y/%m/%d"], known, time.time(), [])
    start = time.perf_counter()
    text = cursor.dumps()
    Cursor.loads(text)
    return {"bytes": len(text), "seconds": time.perf_counter() - start}


def ledger_day(files: int, per_run: int, root: str) -> dict:
    """A day's ledger partition as runs of `per_run` files leave it, then compacted."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    schema = pa.schema([("uri", pa.string()), ("etag", pa.string()), ("size", pa.int64()),
                        ("landing_date", pa.string()), ("status", pa.string()), ("batch_id", pa.string()),
                        ("owner", pa.string()), ("claimed_at", pa.timestamp("us", "UTC")),
                        ("committed_at", pa.timestamp("us", "UTC")), ("records", pa.int64()),
                        ("malformed", pa.int64()), ("rescued", pa.int64()), ("error", pa.string()),
                        ("attempts", pa.int32())])
    now = dt.datetime.now(dt.timezone.utc)
    uri = os.path.join(root, f"ledger-{files}")
    start = time.perf_counter()
    for first in range(0, files, per_run):
        n = range(first, min(first + per_run, files))
        batch = f"batch-{first:08d}-5f0c2a8e-1d2b-4c1e-9a7b"
        # random names and ETags, as real ones are (sequential ones would compress to nothing)
        rows = {"uri": [f"s3://landing/events/2026/12/01/{uuid.uuid4()}.json.gz" for _ in n],
                "etag": [uuid.uuid4().hex for _ in n], "size": [random.randint(1_000, 10_000_000) for _ in n], "landing_date": ["2026-12-01"] * len(n),
                "status": ["committed"] * len(n), "batch_id": [batch] * len(n),
                "owner": ["ip-10-0-0-1:12345:run-0a1b2c"] * len(n), "claimed_at": [now + dt.timedelta(microseconds=i) for i in n],
                "committed_at": [now + dt.timedelta(seconds=1, microseconds=i) for i in n],
                "records": [random.randint(1, 100_000) for _ in n], "malformed": [0] * len(n),
                "rescued": [0] * len(n), "error": [None] * len(n), "attempts": [1] * len(n)}
        # a run's claim inserts its rows and its finish MERGE rewrites them: one live file per run
        write_deltalake(uri, pa.table(rows, schema=schema), mode="append", partition_by=["landing_date"])
    written = time.perf_counter() - start
    table = DeltaTable(uri)
    before = len(table.file_uris())
    start = time.perf_counter()
    table.optimize.compact()
    compact = time.perf_counter() - start
    table = DeltaTable(uri)
    live = sum(os.path.getsize(f.removeprefix("file://")) for f in table.file_uris())
    return {"files": files, "runs": -(-files // per_run), "write_s": written, "files_before": before,
            "files_after": len(table.file_uris()), "compact_s": compact, "bytes_per_row": live / files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="10000,100000", help="files per day to measure (scaled down)")
    parser.add_argument("--lookback-days", type=int, default=2)
    parser.add_argument("--per-run", type=int, default=1000, help="max_files_per_run")
    parser.add_argument("--run-overhead", type=float, default=30.0,
                        help="fixed seconds per Dagster run (the issue measured ~30 s for a tiny partition)")
    parser.add_argument("--tick-seconds", type=int, default=30)
    parser.add_argument("--messages-per-tick", type=int, default=1000)
    args = parser.parse_args()
    sizes = [int(x) for x in args.files.split(",")]
    out = {}

    print("sensor cursor (a digest per file of the look-back window)")
    for n in sizes:
        c = measure_cursor(n, args.lookback_days)
        print(f"  {n:>8} files/day x {args.lookback_days} days: {c['bytes'] / 1e6:8.2f} MB, dumps+loads {c['seconds']:.2f} s")
        out.setdefault("cursor", []).append({"files": n, **c})
    per_file = statistics.median(c["bytes"] / (c["files"] * args.lookback_days) for c in out["cursor"])
    print(f"  -> 1M/day: {per_file * TARGET * args.lookback_days / 1e6:.0f} MB of cursor per tick "
          f"({per_file:.1f} B per file, extrapolated)")

    print("ledger: one day's partition, written run by run, then delta-rs optimize.compact()")
    with tempfile.TemporaryDirectory() as root:
        for n in sizes:
            d = ledger_day(n, args.per_run, root)
            print(f"  {n:>8} files: {d['runs']} runs written in {d['write_s']:.1f} s, {d['files_before']} files -> "
                  f"{d['files_after']} after compact in {d['compact_s']:.2f} s, {d['bytes_per_row']:.0f} B/row (parquet)")
            out.setdefault("ledger", []).append(d)
    big = out["ledger"][-1]
    scale = TARGET / big["files"]
    print(f"  -> 1M/day: {TARGET // args.per_run} live files and {2 * TARGET // args.per_run} commits/day before compaction, one compact of the day "
          f"~{big['compact_s'] * scale:.0f} s, {big['bytes_per_row'] * TARGET / 1e6:.0f} MB/day, "
          f"{big['bytes_per_row'] * TARGET * 365 / 1e9:.1f} GB/year of ledger (extrapolated)")

    ticks = 86_400 // args.tick_seconds
    print("sqs (arithmetic)")
    print(f"  {ticks} ticks/day x {args.messages_per_tick} messages = {ticks * args.messages_per_tick / 1e6:.2f}M "
          f"messages/day capacity; 1M/day needs {TARGET / 86_400:.1f} msg/s average; "
          f"{TARGET // 10:,} ReceiveMessage and {TARGET // 10:,} DeleteMessageBatch calls/day (10 per call)")

    runs = -(-TARGET // args.per_run)
    print("runs (arithmetic)")
    print(f"  max_files_per_run {args.per_run}: {runs} runs/day, {runs / 24:.0f}/hour; at {args.run_overhead:.0f} s "
          f"fixed per run: {runs * args.run_overhead / 3600:.1f} run-hours/day of overhead alone")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
