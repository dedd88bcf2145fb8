"""What one small run costs against the history already ingested.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/history_cost.py --history 0,10000,100000 \
        --code before=<checkout> --code after=$PWD [--storage local] [--count]

Against one local S3 server (moto) holding landing and warehouse, or (--storage local) local
folders, the history grows in steps (0, then 10k, then 100k files of one record each, --per-day
files per day folder `events/YYYY/MM/DD/`) and after each step it times, --repeat times on a
fresh day each (medians):

  new file   `ingest` of 1 new file on a new day (what a sensor's run does)
  no-op      the same day again (nothing to ingest)
  status     `lake status` (source_status) of its default window, the 7 landing days up to the
             run's (code without status_days: every day)

moto answers every list request by filtering and sorting every key of the bucket (S3 answers in
proportion to the keys it returns), so on moto a listing grows with the history however few keys
it returns: each step prints what one request costs, and --count counts the requests of one more
run of each kind (moto's request recorder): landing listings and the ledger's and bronze's Delta
log and data reads. Local folders show the code's own scaling without that.

The history is built directly rather than ingested file by file: the landing objects are written,
and each history day gets one ledger commit (committed rows with the objects' ETags) and one
bronze commit (the file's row with its lineage columns), written with delta-rs into the tables
a first real ingest created, then a checkpoint (--no-checkpoint: none; see write_history_tables).
That is what a run reads: the listing, the ledger, bronze's partitions. Which code runs is
whatever `lake_assets` imports (PYTHONPATH of each --code checkout), in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
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
    """Write files start..stop-1 (S3 PUTs or local files); returns their ETags (as storage lists them)."""
    from lake_assets import storage

    def put(n: int) -> None:
        body = json.dumps({"id": n, "name": f"device-{n}", "reading": n * 0.5}).encode() + b"\n"
        storage.write_bytes(f"{landing}/{key(history_day(n, per_day), n)}", body)

    with ThreadPoolExecutor(16 if storage.is_s3(landing) else 2) as pool:
        list(pool.map(put, range(start, stop)))
    days = sorted({history_day(n, per_day) for n in range(start, stop)})
    etags = {f.uri: f.etag for day in days for f in storage.list_files(f"{landing}/events/{day:%Y/%m/%d}")}
    return {n: etags[f"{landing}/{key(history_day(n, per_day), n)}"] for n in range(start, stop)}


def list_probe(landing: str) -> dict[str, float]:
    """Seconds of one ListObjectsV2 request (median of 3) against what the bucket holds: the first page
    of the prefix, one key past the date folders (list_days' two probes) and a day folder with no keys (S3
    answers in proportion to the keys it returns; moto filters and sorts every key of the bucket)."""
    from lake_assets import storage

    bucket = storage.split_uri(landing)[0]
    requests = {"first page": {"Prefix": "events/", "MaxKeys": 1000},
                "1 key past the end": {"Prefix": "events/", "StartAfter": "events/:", "MaxKeys": 1},
                "an empty day folder": {"Prefix": f"events/{RUN_DAY - dt.timedelta(days=1):%Y/%m/%d}/"}}
    out = {}
    for name, kwargs in requests.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            storage.s3_client().list_objects_v2(Bucket=bucket, **kwargs)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


class Requests:
    """What the S3 server (moto's request recorder) received while the block ran, by kind:
    listings of the landing, and reads of the ledger's and bronze's Delta logs and data files."""

    def __init__(self, endpoint: str, landing: str):
        self.endpoint, self.landing_bucket = endpoint, landing.split("://", 1)[1].split("/", 1)[0]

    def _call(self, action: str, method: str = "POST") -> bytes:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method=method)
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as response:
            return response.read()

    def __enter__(self) -> "Requests":
        self._call("reset-recording")
        self._call("start-recording")
        return self

    def __exit__(self, *exc) -> None:
        from urllib.parse import parse_qs, unquote, urlsplit

        lines = self._call("download-recording", "GET").decode().splitlines()
        self._call("stop-recording")
        self.counts: dict[str, int] = {}
        for line in filter(None, lines):
            r = json.loads(line)
            url = urlsplit(r["url"])
            bucket, _, path = unquote(url.path).lstrip("/").partition("/")
            query = parse_qs(url.query)
            if "list-type" in query:
                path = query.get("prefix", [""])[0]
                what = "landing list" if bucket == self.landing_bucket else \
                    f"{_table_of(path)} list" if _table_of(path) else "warehouse list"
            elif bucket == self.landing_bucket:
                what = f"landing {r['method']}"
            else:
                table = _table_of(path) or "other"
                what = f"{table} {r['method']} " + ("log" if "/_delta_log/" in path else "data")
            self.counts[what] = self.counts.get(what, 0) + 1


def _table_of(path: str) -> str | None:
    """Which table of the Layout a warehouse key belongs to."""
    parts = path.split("/")
    if parts[0] == "_state" and len(parts) > 2:
        return "ledger" if parts[2] == "ledger" else "schema log"
    if parts[0] == "bronze" and len(parts) > 1:
        return "quarantine" if parts[1].endswith("__quarantine") else "bronze"
    return None


def write_history_tables(lake, etags: dict[int, str], per_day: int, checkpoint: bool = True) -> None:
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
    if checkpoint and by_day:
        # Sail checkpoints every 10th commit it makes (delta-rs every 100th): a real history leaves at
        # most 9 commits to replay; these delta-rs appends would leave up to 99.
        for uri in (ledger_uri, bronze_uri):
            DeltaTable(uri, storage_options=storage_options(uri)).create_checkpoint()


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
    write_history_tables(lake, etags, args.per_day, checkpoint=not args.no_checkpoint)
    def runs(day: dt.date, name: str):
        # `lake status`'s default: the 7 landing days up to the run's (older code: every day)
        days = status_days(None, day.isoformat(), day) if status_days else None
        land(lake, day, name)
        return {"new file": lambda: ingest(spark, lake, source, [day.isoformat()], log=quiet),
                "no-op": lambda: ingest(spark, lake, source, [day.isoformat()], log=quiet),
                "status": lambda: source_status(spark, lake, source, *([days] if days else []))}

    times: dict[str, list[float]] = {"new file": [], "no-op": [], "status": []}
    for i in range(args.repeat):
        for what, fn in runs(args.run_day + dt.timedelta(days=i), f"new-{args.stop}-{i}").items():
            times[what].append(timed(fn))
    result = {"code": lake_assets.__file__, **{k: statistics.median(v) for k, v in times.items()}}
    if args.count:   # once more, untimed, with moto's request recorder on
        requests = {}
        for what, fn in runs(args.run_day + dt.timedelta(days=args.repeat), f"counted-{args.stop}").items():
            with Requests(os.environ["AWS_ENDPOINT_URL"], args.landing) as seen:
                fn()
            requests[what] = seen.counts
        result["requests"] = requests
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="0,10000,100000", help="history sizes, ascending")
    parser.add_argument("--per-day", type=int, default=1000, help="history files per day folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", action="append", default=[],
                        help="NAME=CHECKOUT to time (repeatable; default: this checkout as 'this')")
    parser.add_argument("--storage", choices=["moto", "local"], default="moto",
                        help="landing and warehouses on one moto S3 server, or in local folders (the code's own "
                             "scaling, without moto's listing, which costs O(keys in the bucket) per request)")
    parser.add_argument("--count", action="store_true",
                        help="moto: also count the requests of one more run of each kind (untimed)")
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="leave the history's commits without a checkpoint after them (delta-rs writes one "
                             "every 100 commits; Sail every 10)")
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

    results: dict[str, dict[int, dict]] = {name: {} for name in codes}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        if args.storage == "moto":
            from lake_assets.localstack import LocalS3

            s3 = stack.enter_context(LocalS3())
            env = {**os.environ, **s3.apply_env()}
            landing, warehouses = "s3://hist-landing", {name: f"s3://hist-{name}" for name in codes}
            s3.create_buckets(landing, *warehouses.values())
        else:
            env = dict(os.environ)
            landing, warehouses = f"{tmp}/landing", {name: f"{tmp}/warehouse-{name}" for name in codes}
            for folder in (landing, *warehouses.values()):
                os.makedirs(folder)
        have = 0
        for level, size in enumerate(sizes):
            t0 = time.perf_counter()
            etags = put_history(landing, have, size, args.per_day)
            print(f"history {size:>7}: {size - have} object(s) written in {time.perf_counter() - t0:.0f} s "
                  f"(load {_load()})", flush=True)
            if args.storage == "moto":
                print("  one list request: " + ", ".join(f"{k} {v:.3f} s" for k, v in
                                                         list_probe(landing).items()), flush=True)
            Path(tmp, "etags.json").write_text(json.dumps(etags))
            have = size
            for c, (name, checkout) in enumerate(codes.items()):
                # every (code, level) runs on days of its own, so no run sees another's new file as its own
                run_day = RUN_DAY + dt.timedelta(days=100 * c + 10 * level)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--landing", landing,
                     "--warehouse", warehouses[name], "--etags", str(Path(tmp, "etags.json")),
                     "--per-day", str(args.per_day), "--repeat", str(args.repeat), "--stop", str(size),
                     "--run-day", run_day.isoformat(), *(["--count"] if args.count and args.storage == "moto" else []),
                     *(["--no-checkpoint"] if args.no_checkpoint else [])],
                    env={**env, "PYTHONPATH": checkout}, capture_output=True, text=True, check=False)
                line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    sys.exit(f"{name} at {size} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
                results[name][size] = json.loads(line[0][len("RESULT "):])
                requests = results[name][size].pop("requests", None)
                print(f"  {name:>8} ({results[name][size].pop('code')}, load {_load()}): "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in results[name][size].items()), flush=True)
                for what, counts in (requests or {}).items():
                    print(f"    requests of one {what}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    for name, rows in results.items():
        base = rows[sizes[0]]
        print(f"\n{name}: median of {args.repeat}, ratio to history {sizes[0]}")
        print(f"{'history files':>13}  " + "  ".join(f"{k:>16}" for k in base))
        for size, row in rows.items():
            print(f"{size:>13}  " + "  ".join(f"{v:7.2f} s ({v / base[k]:4.2f}x)" for k, v in row.items()))


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
