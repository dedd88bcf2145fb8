"""Bronze throughput against the engine's own JSON reader, on the same nested NDJSON.

    .venv/bin/python benchmarks/bronze_throughput.py --mb 100

Generates about N MB of drifting device telemetry (lake_assets.demo.data.generate_records) in
~20 local files — the first half in the day-1 shape, then files with new fields (`battery_pct`,
`signals[].unit`), then files where `device.fw.minor` is sometimes a string (type conflicts, so
the rescue path runs) — and loads it into Delta three ways in one process:

  plain   spark.read.json(files) -> Delta append            (the baseline: no rescue, no lineage;
                                                              it reads a clean twin of the files, as
                                                              it fails on any type conflict)
  bronze  lake_assets.core.bronze.ingest(...)                (ours: full-batch inference, rescue,
                                                              _source_file/_line, ledger, schema log)
  text    spark.read.text -> from_json(bronze schema) -> Delta   (optional, --no-text skips it)

Each path runs --repeat times, interleaved (plain, bronze, text, plain, …), each into a fresh
table. Prints the median MB/s of each, the bronze/plain ratio (the target is >= 0.40), the peak
RSS of each path, and where bronze spends its time: the phases between ingest's checkpoints, and the Python time
inside the passes over the files (lake_scan parses and infers; lake_typed hands the scan's
pyarrow tables to the engine, walking through the Fitter only what does not fit; lake_malformed
reads malformed lines for the quarantine), which the embedded engine runs in this process under
one GIL. `--profile` adds a cProfile of the scan and lake_typed over one file.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

MB = 1024 * 1024
DAY = dt.date(2026, 11, 18)


# ---------------------------------------------------------------- memory

def _status(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak() -> None:
    """Linux: restart the VmHWM (peak RSS) counter, so each phase reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss() -> int:
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"


# ---------------------------------------------------------------- data

def generate(root: Path, mb: int, files: int, seed: int) -> tuple[list[str], list[str], int]:
    """~`mb` MB of NDJSON in `files` files under root/landing/telemetry/YYYY/MM/DD/, and a clean
    twin of them under root/clean/ (the same records with the type conflicts undone, which the
    engine's JSON reader needs: it fails the query on any of them). (landing paths, clean paths, bytes)."""
    from lake_assets.demo.data import generate_records, to_ndjson

    folder = root / "landing" / "telemetry" / f"{DAY:%Y/%m/%d}"
    clean_folder = root / "clean"
    folder.mkdir(parents=True, exist_ok=True)
    clean_folder.mkdir(parents=True, exist_ok=True)
    per_file = mb * MB // files
    paths, clean_paths, total, offset = [], [], 0, 0
    for i in range(files):
        # Drift: day-1 shape for the first half, new fields next, type conflicts in the last fifth.
        day = 1 if i < files // 2 else 2 if i < files - max(1, files // 5) else 3
        path, clean_path = folder / f"part-{i:03d}.json", clean_folder / f"part-{i:03d}.json"
        size = 0
        with open(path, "wb") as fh, open(clean_path, "wb") as clean_fh:
            while size < per_file:
                records = generate_records(500, seed, day=day, date=DAY, start=offset)
                offset += 500
                body = to_ndjson(records)
                fh.write(body)
                size += len(body)
                for r in records:
                    fw = r["device"]["fw"]
                    if isinstance(fw["minor"], str):
                        fw["minor"] = int(fw["minor"].split("-")[0])
                clean_fh.write(to_ndjson(records))
        paths.append(str(path))
        clean_paths.append(str(clean_path))
        total += size
    return paths, clean_paths, total


# ---------------------------------------------------------------- instrumentation

class Timeline:
    """Timestamps of ingest's checkpoints and log lines, and Python time inside the data sources."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.events: list[tuple[float, str]] = []
        self.cpu: dict[str, float] = defaultdict(float)     # CPU seconds inside the reader
        self.busy: dict[str, float] = defaultdict(float)    # wall seconds while any partition ran
        self.active: dict[str, int] = defaultdict(int)
        self.typed_files = self.files = 0      # files lake_typed took from the scan's parse / all it read
        self.since: dict[str, float] = {}
        self.rows: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget the previous run (each repeat reports on its own)."""
        self.t0 = time.perf_counter()
        self.events.clear()
        for d in (self.cpu, self.busy, self.rows):
            d.clear()
        self.typed_files = self.files = 0

    def mark(self, name: str) -> None:
        self.events.append((time.perf_counter() - self.t0, name))

    def install(self) -> None:
        from lake_assets.core import bronze, reader

        original_checkpoint = bronze.checkpoint

        def checkpoint(point: str) -> None:
            self.mark(f"checkpoint {point}")
            original_checkpoint(point)

        bronze.checkpoint = checkpoint
        for name, cls in (("scan", reader._ScanReader), ("malformed", reader._MalformedReader), ("typed", reader._TypedReader)):
            cls.read = self._timed(name, cls.read)

    def _timed(self, name: str, read):
        """Wrap a reader's generator: CPU time of its threads, and wall time while any partition
        of it is running (partitions run concurrently on engine threads, so their wall times overlap)."""
        timeline = self

        def timed_read(reader_self, partition):
            if name == "typed":
                with timeline._lock:
                    timeline.typed_files += sum(1 for f in partition.files if f.get("typed"))
                    timeline.files += len(partition.files)
            it = iter(read(reader_self, partition))
            while True:
                timeline._enter(name)
                cpu = time.thread_time()
                try:
                    item = next(it)
                except StopIteration:
                    timeline._leave(name, time.thread_time() - cpu, 0)
                    return
                timeline._leave(name, time.thread_time() - cpu, item.num_rows if hasattr(item, "num_rows") else 1)
                yield item

        return timed_read

    def _enter(self, name: str) -> None:
        with self._lock:
            if self.active[name] == 0:
                self.since[name] = time.perf_counter()
            self.active[name] += 1

    def _leave(self, name: str, cpu: float, rows: int) -> None:
        with self._lock:
            self.active[name] -= 1
            if self.active[name] == 0:
                self.busy[name] += time.perf_counter() - self.since[name]
            self.cpu[name] += cpu
            self.rows[name] += rows


# ---------------------------------------------------------------- the three paths

def run_plain(spark, files: list[str], out: str) -> int:
    df = spark.read.json(files)
    df.write.format("delta").mode("append").save(out)
    return spark.read.format("delta").load(out).count()


def run_bronze(spark, landing: str, warehouse: str, timeline: Timeline, hints: str, extra: str = ""):
    from lake_assets.config import parse_config
    from lake_assets.core import bronze
    from lake_assets.core.layout import Layout

    lake = parse_config(f"""
landing: {landing}
warehouse: {warehouse}
sources:
  telemetry:
    path: telemetry/
    format: json
    start_date: 2026-11-01
    schema_evolution_mode: addNewColumns
    schema_hints: "{hints}"
{extra}""")
    source = lake.source("telemetry")

    def log(message: str) -> None:
        timeline.mark(f"log: {message[:110]}")

    timeline.reset()
    timeline.mark("ingest start")
    result = bronze.ingest(spark, lake, source, [DAY.isoformat()], log=log)
    timeline.mark("ingest end")
    return _Shown((result, Layout(lake.warehouse, source.name).bronze))


class _Shown(tuple):
    def __str__(self):
        return f"{self[0].records} rows"


def run_text(spark, files: list[str], schema, out: str) -> int:
    from pyspark.sql import functions as F

    # Sail's from_json fails the query on "…T08:15:02.123Z" without an explicit format.
    options = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"}
    df = spark.read.text(files).select(F.from_json("value", schema, options).alias("r")).select("r.*")
    df.write.format("delta").mode("append").save(out)
    return spark.read.format("delta").load(out).count()


def measure(paths: dict, nbytes: int, results: dict, repeat: int) -> dict:
    """Run each path fn(i) `repeat` times, each into a fresh output, interleaved (round i runs every
    path once), so that warm-up and machine drift fall on all paths alike; report the medians.
    Returns each path's last value."""
    runs: dict = {label: [] for label in paths}
    peaks: dict = {label: 0 for label in paths}
    values: dict = {}
    for i in range(repeat):
        for label, fn in paths.items():
            reset_peak()
            start = time.perf_counter()
            values[label] = fn(i)
            runs[label].append(time.perf_counter() - start)
            peaks[label] = max(peaks[label], peak_rss())
    for label, times in runs.items():
        seconds = sorted(times)[len(times) // 2]
        results[label] = {"seconds": seconds, "runs": times, "mb_s": nbytes / MB / seconds, "peak_rss": peaks[label]}
        value = values[label]
        shown = f"{value} rows" if isinstance(value, int) else str(value)
        spread = f", median of {', '.join(f'{r:.2f}' for r in times)}" if repeat > 1 else ""
        print(f"  {label:<7} {seconds:7.2f} s  {nbytes / MB / seconds:7.1f} MB/s  peak RSS {gib(peaks[label])}"
              f"  ({shown}{spread})", flush=True)
    return values


# ---------------------------------------------------------------- other framings

FRAMINGS = {  # name -> (source config keys, how the NDJSON records of one file are written)
    "array": ("    multiline: true\n", lambda records: b"[" + b",\n".join(records) + b"]"),
    "multiline": ("    multiline: true\n", lambda records: b"\n".join(
        json.dumps(json.loads(r), indent=2).encode() for r in records)),
    "concatenated": ("", lambda records: b"".join(records)),  # Firehose: detected, no config
    "records_path": ("    records_path: Records\n", lambda records: b"\n".join(
        b'{"Records":[' + b",".join(records[i:i + 100]) + b"]}" for i in range(0, len(records), 100))),
}


def reframe(files: list[str], root: Path, name: str) -> tuple[str, int]:
    """The landing files rewritten in framing `name` under root/<name>/telemetry/…: (landing, bytes)."""
    landing = root / name
    total = 0
    for path in files:
        records = [line for line in Path(path).read_bytes().split(b"\n") if line.strip()]
        target = landing / "telemetry" / Path(path).relative_to(Path(path).parents[3])
        target.parent.mkdir(parents=True, exist_ok=True)
        body = FRAMINGS[name][1](records)
        target.write_bytes(body)
        total += len(body)
    return str(landing), total


def measure_framings(spark, files: list[str], work: Path, timeline: Timeline, hints: str, repeat: int,
                     results: dict) -> None:
    print("\nother framings (the same records; MB/s of each framing's own bytes):", flush=True)
    for name, (extra, _) in FRAMINGS.items():
        landing, nbytes = reframe(files, work / "framings", name)
        out = work / "out" / f"framing_{name}"
        got: dict = {}
        values = measure({name: lambda i: run_bronze(spark, landing, str(out / str(i)), timeline, hints, extra)},
                         nbytes, got, repeat)
        results.setdefault("framings", {})[name] = {**got[name], "records": values[name][0].records}


# ---------------------------------------------------------------- profile one file

def profile_passes(path: str, schema_json: str, top: int) -> None:
    """cProfile, outside Spark, the passes over one file: the scan (pyarrow parse and inference),
    lake_typed from the scan's parse, and lake_typed walking every line through the Fitter."""
    from pyspark.sql import types as T

    from lake_assets.core import reader, typed_rows

    size = os.path.getsize(path)
    info = {"uri": path, "size": size, "day": DAY.isoformat(), "malformed": []}
    declared = typed_rows.declared_schema(T.StructType.fromJson(json.loads(schema_json))).json()
    typed_options = {"schema": declared, "target": schema_json, "rescued_column": "_rescued_data"}
    for name, cls, options in (
        ("scan", reader._ScanReader, {"files": json.dumps([info]), "keep_parsed": "true"}),
        ("typed (the scan's parse)", reader._TypedReader, {"files": json.dumps([{**info, "typed": True}]),
                                                           **typed_options}),
        ("typed (every line walked)", reader._TypedReader, {"files": json.dumps([{**info, "typed": False}]),
                                                            **typed_options}),
    ):
        r = cls(options)
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        for _ in r.read(reader._Files(r.files)):
            pass
        profiler.disable()
        seconds = time.perf_counter() - start
        print(f"\n--- cProfile {name}: {Path(path).name}, {size / MB:.1f} MB in {seconds:.2f} s "
              f"({size / MB / seconds:.1f} MB/s single-threaded, profiler on)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="MB of NDJSON to generate (default 100)")
    parser.add_argument("--files", type=int, default=20, help="number of files (default 20)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="work folder (default: a temp folder, removed afterwards)")
    parser.add_argument("--hints", default="event_id STRING, recorded_at TIMESTAMP",
                        help="the source's schema_hints (default: the demo's, %(default)r)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each path (each into a fresh table and warehouse); the median is reported")
    parser.add_argument("--no-text", action="store_true", help="skip the read.text -> from_json path")
    parser.add_argument("--profile", action="store_true", help="also cProfile both passes over one file")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--framings", action="store_true",
                        help="also load the same records as one array per file, pretty-printed documents, "
                             "concatenated objects (Firehose) and {\"Records\": [...]} envelopes")
    args = parser.parse_args(argv)

    os.environ.setdefault("RUST_LOG", "error")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bronze_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        landing, out = work / "landing", work / "out"
        for folder in (out, landing, work / "clean"):
            shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        files, clean_files, nbytes = generate(work, args.mb, args.files, args.seed)
        print(f"generated {nbytes / MB:.1f} MB in {len(files)} files in {time.perf_counter() - start:.1f} s "
              f"({work})", flush=True)

        from lake_assets.engine import spark_session

        timeline = Timeline()
        timeline.install()
        spark = spark_session()
        spark.range(1).collect()  # server start-up is not part of any path
        cores = os.cpu_count()
        print(f"engine: embedded Sail, {cores} cores; peak RSS before the runs {gib(peak_rss())}", flush=True)

        results: dict = {"mb": nbytes / MB, "files": len(files), "cores": cores}
        from lake_assets.core.layout import AUDIT_COLUMNS, Layout

        def text(i: int) -> int:  # into bronze's data schema, as the first bronze run made it
            full = spark.read.format("delta").load(Layout(str(out / "warehouse0"), "telemetry").bronze).schema
            data_schema = type(full)([f for f in full.fields if f.name not in AUDIT_COLUMNS
                                      and f.name != "_rescued_data"])
            return run_text(spark, files, data_schema, str(out / f"text{i}"))

        paths = {"plain": lambda i: run_plain(spark, clean_files, str(out / f"plain{i}")),
                 "bronze": lambda i: run_bronze(spark, str(landing), str(out / f"warehouse{i}"), timeline, args.hints)}
        if not args.no_text:
            paths["text"] = text
        values = measure(paths, nbytes, results, args.repeat)
        plain_rows, (result, table) = values["plain"], values["bronze"]
        bronze_rows = result.records
        results["bronze"].update(records=result.records, rescued=result.rescued, malformed=result.malformed)
        if plain_rows != bronze_rows:
            print(f"  NOTE: plain wrote {plain_rows} rows, bronze {bronze_rows}")

        ratio = results["bronze"]["mb_s"] / results["plain"]["mb_s"]
        results["ratio"] = ratio
        print(f"\nbronze / plain = {ratio:.2f}  (target >= 0.40: {'met' if ratio >= 0.40 else 'NOT met'})")
        print(f"bronze: {result.records} records, {result.rescued} with rescued data, {result.malformed} malformed")
        print(f"process peak RSS (whole run) {gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}")

        print("\nbronze timeline of the last run (s since ingest was called; each line: time since the previous one):")
        previous = 0.0
        breakdown = []
        for at, name in timeline.events:
            breakdown.append({"at": at, "delta": at - previous, "event": name})
            print(f"  {at:7.2f}  +{at - previous:6.2f}  {name}")
            previous = at
        results["timeline"] = breakdown
        total = results["bronze"]["seconds"]
        print("\nPython inside the data sources (run by the embedded engine in this process, one GIL):")
        for name in ("scan", "typed", "malformed"):
            busy, cpu = timeline.busy[name], timeline.cpu[name]
            print(f"  {name:<6} busy {busy:6.2f} s wall ({busy / total:5.1%} of bronze), {cpu:6.2f} s CPU "
                  f"({nbytes / MB / cpu if cpu else 0:6.1f} MB/s per CPU second), {timeline.rows[name]} row(s) out")
        print(f"  lake_typed took {timeline.typed_files} of {timeline.files} file(s) from the scan's pyarrow parse "
              f"(the rest it walked line by line through the Fitter)")
        results["typed_files"] = timeline.typed_files
        results["python"] = {"busy": dict(timeline.busy), "cpu": dict(timeline.cpu)}

        if args.framings:
            measure_framings(spark, files, work, timeline, args.hints, args.repeat, results)
        if args.profile:
            schema = spark.read.format("delta").load(table).schema
            target = type(schema)([f for f in schema.fields if f.name not in AUDIT_COLUMNS
                                   and f.name != "_rescued_data"])
            profile_passes(files[-1], target.json(), 12)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
