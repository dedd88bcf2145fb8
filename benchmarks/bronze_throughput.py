"""Bronze throughput against the raw engine and against peers, on the same nested NDJSON.

    .venv/bin/python benchmarks/bronze_throughput.py --mb 300 --files 40 --repeat 3
    .venv/bin/python benchmarks/bronze_throughput.py --quick        # a smoke run, under a minute

Generates two data sets of about N MB of device telemetry (lake_assets.demo.data.generate_records)
in `--files` local files of one landing day:

  clean     every file in the day-1 shape (one schema);
  drifting  the first half in the day-1 shape, then files that add a top-level field
            (`battery_pct`), a nested one (`device.fw.patch`) and a field of array elements
            (`signals[].unit`); in the last fifth of the files 1 of 8 records sends
            `device.fw.minor` as a string ("7-beta": a type conflict with the BIGINT column).

and loads each into Delta with every system below, in one process, interleaved (round i runs every
system once on each data set, each into a fresh table), `--repeat` rounds, reporting medians (a
ratio: the median of the rounds' ratios to raw):

  raw       Sail spark.read.json(files) -> Delta append: the ceiling (no rescue, no lineage). It
            fails on the conflict, so on drifting data it reads a conflict-free twin of the files.
  bronze    lake_assets.core.bronze.ingest of the day in each schema_evolution_mode (rescue,
            addNewColumns, none, failOnNewColumns), into a table that already holds the day
            before (one small day-1 file, loaded untimed: it makes the schema), so the drift
            meets an accepted schema in that mode.
  pyarrow   pyarrow.json.read_json per file, concat_tables(permissive) -> deltalake.write_deltalake
  duckdb    read_json_auto(files, union_by_name) -> write_deltalake (streamed record batches)
  polars    read_ndjson per file (full inference), concat(diagonal_relaxed) -> write_delta
  dlt       when importable (it is not in the project's venv; run from a side venv to include it)

Prints one table: MB/s, the ratio to raw and the process's CPU seconds (all threads, the embedded
engine's included: less bent by the machine's load than wall time) per data set, whether the system survives the drift,
whether nothing is lost (rows in = rows out + quarantine) and where the new fields went. For the
bronze runs it also shows how many files the typed pass took from the scan's pyarrow parse (the
rest it walked record by record through the Fitter) and the Python time inside the data sources
(lake_scan, lake_typed, lake_malformed), which the embedded engine runs in this process under one
GIL. `--profile` adds a cProfile of the scan and lake_typed over one drifting file in rescue mode.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

MB = 1024 * 1024
DAY = dt.date(2026, 11, 18)
SEED_DAY = DAY - dt.timedelta(days=1)   # bronze's table is made from this day's one small file first
MODES = ("rescue", "addNewColumns", "none", "failOnNewColumns")
NEW_FIELDS = ("battery_pct", "device.fw.patch", "signals[].unit")  # what the drifting files add


# ---------------------------------------------------------------- data

@dataclass
class Dataset:
    name: str
    landing: str               # the landing root (bronze's `landing:`); files under telemetry/YYYY/MM/DD/
    paths: list[str]
    bytes: int
    records: int
    twin: list[str] = field(default_factory=list)   # drifting: the same records without the conflicts


def shape_of(i: int, files: int, drift: bool) -> int:
    """The demo's drift day of file i: day-1 shape for the first half, new fields next, type
    conflicts (and device.fw.patch) in the last fifth."""
    if not drift or i < files // 2:
        return 1
    return 2 if i < files - max(1, files // 5) else 3


def generate(root: Path, name: str, mb: int, files: int, seed: int, drift: bool) -> Dataset:
    """~`mb` MB of NDJSON in `files` files under root/name/telemetry/YYYY/MM/DD/ (and, when
    drifting, a conflict-free twin under root/name-twin/, which the raw engine's reader needs), and
    one small day-1 file on SEED_DAY, which makes bronze's table before the measured run."""
    from lake_assets.demo.data import generate_records, to_ndjson

    folder, twin_folder = root / name / "telemetry" / f"{DAY:%Y/%m/%d}", root / f"{name}-twin"
    folder.mkdir(parents=True, exist_ok=True)
    twin_folder.mkdir(parents=True, exist_ok=True)
    per_file = mb * MB // files
    ds = Dataset(name, str(root / name), [], 0, 0)
    for i in range(files):
        path, twin = folder / f"part-{i:03d}.json", twin_folder / f"part-{i:03d}.json"
        size = 0
        with open(path, "wb") as fh, open(twin, "wb") as twin_fh:
            while size < per_file:
                records = generate_records(500, seed, day=shape_of(i, files, drift), date=DAY, start=ds.records)
                ds.records += len(records)
                body = to_ndjson(records)
                fh.write(body)
                size += len(body)
                if drift:
                    for r in records:
                        fw = r["device"]["fw"]
                        if isinstance(fw["minor"], str):
                            fw["minor"] = int(fw["minor"].split("-")[0])
                    twin_fh.write(to_ndjson(records))
        ds.paths.append(str(path))
        if drift:
            ds.twin.append(str(twin))
        ds.bytes += size
    first = root / name / "telemetry" / f"{SEED_DAY:%Y/%m/%d}" / "seed.json"  # the day before, for bronze
    first.parent.mkdir(parents=True, exist_ok=True)
    first.write_bytes(to_ndjson(generate_records(1000, seed, day=1, date=SEED_DAY)))
    return ds


# ---------------------------------------------------------------- instrumentation

class Timeline:
    """Python time inside bronze's data sources, and how many files lake_typed took from the scan's parse."""

    def __init__(self):
        self.busy: dict[str, float] = defaultdict(float)    # wall seconds while any partition ran
        self.cpu: dict[str, float] = defaultdict(float)     # CPU seconds of their threads
        self.active: dict[str, int] = defaultdict(int)
        self.since: dict[str, float] = {}
        self.typed_files = self.files = self.walked = 0
        self.t0 = time.perf_counter()
        self.cpu0 = process_cpu()
        self.points: list[tuple[str, float, float]] = []   # ingest's checkpoints: wall and CPU seconds since reset
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.busy.clear()
        self.cpu.clear()
        self.typed_files = self.files = self.walked = 0
        self.t0, self.cpu0, self.points = time.perf_counter(), process_cpu(), []

    def snapshot(self) -> dict:
        return {"busy": dict(self.busy), "cpu": dict(self.cpu), "typed_files": self.typed_files, "files": self.files,
                "walked": self.walked, "points": list(self.points)}

    def mark(self, point: str) -> None:
        self.points.append((point, time.perf_counter() - self.t0, process_cpu() - self.cpu0))

    def install(self) -> None:
        from lake_assets.core import bronze, reader, typed_rows

        checkpoint = bronze.checkpoint

        def timed_checkpoint(point: str, *args) -> None:
            self.mark(point)
            checkpoint(point, *args)

        bronze.checkpoint = timed_checkpoint

        walked_batch = typed_rows.walked_batch

        def counted(out, declared, fitter, walk, f):  # records walked through the Fitter, one by one
            with self._lock:
                self.walked += len(walk)
            return walked_batch(out, declared, fitter, walk, f)

        typed_rows.walked_batch = counted

        for name, cls in (("scan", reader._ScanReader), ("malformed", reader._MalformedReader),
                          ("typed", reader._TypedReader)):
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
                    return
                finally:
                    timeline._leave(name, time.thread_time() - cpu)
                yield item

        return timed_read

    def _enter(self, name: str) -> None:
        with self._lock:
            if self.active[name] == 0:
                self.since[name] = time.perf_counter()
            self.active[name] += 1

    def _leave(self, name: str, cpu: float) -> None:
        with self._lock:
            self.active[name] -= 1
            if self.active[name] == 0:
                self.busy[name] += time.perf_counter() - self.since[name]
            self.cpu[name] += cpu


# ---------------------------------------------------------------- outcomes

@dataclass
class Outcome:
    rows_out: int = 0
    quarantine: int = 0
    fields: dict = field(default_factory=dict)   # NEW_FIELDS path -> "column" / "rescued" / "dropped"
    failed: str | None = None                    # why the load did not survive


def field_paths(t, prefix: str = "") -> set[str]:
    """Dotted field paths of a Spark type, "[]" for array elements (signals[].unit)."""
    from pyspark.sql import types as T

    if isinstance(t, T.StructType):
        out = set()
        for f in t.fields:
            path = f"{prefix}.{f.name}" if prefix else f.name
            out |= {path} | field_paths(f.dataType, path)
        return out
    if isinstance(t, T.ArrayType):
        return field_paths(t.elementType, prefix + "[]")
    return set()


def where_new_fields(schema, rescued: set[str] = frozenset()) -> dict:
    columns = field_paths(schema)
    return {p: "column" if p in columns else "rescued" if p in rescued else "dropped" for p in NEW_FIELDS}


def delta_outcome(out: Path) -> Outcome:
    """Rows and columns of a Delta table from its log (delta-rs metadata only: it exits cleanly)."""
    from deltalake import DeltaTable
    from pyspark.sql import types as T

    table = DeltaTable(str(out))
    rows = sum(table.get_add_actions(flatten=True).column("num_records").to_pylist())
    return Outcome(rows_out=rows, fields=where_new_fields(T.StructType.fromJson(json.loads(table.schema().to_json()))))


# ---------------------------------------------------------------- the systems
# Each load(dataset, out folder) is timed and returns check(), which (untimed) says what landed.

def load_raw(spark, ds: Dataset, out: Path):
    spark.read.json(ds.twin or ds.paths).write.format("delta").mode("append").save(str(out))
    written = spark.read.format("delta").load(str(out))
    rows = written.count()
    return lambda: Outcome(rows_out=rows, fields=where_new_fields(written.schema))


def lake_config(landing, warehouse, hints: str, extra: str = ""):
    """The benchmark's lake: one source `telemetry` (its schema_hints, and `extra` source keys)."""
    from lake_assets.config import parse_config

    return parse_config(f"landing: {landing}\nwarehouse: {warehouse}\nsources:\n  telemetry:\n"
                        f"    path: telemetry/\n    format: json\n    start_date: 2026-11-01\n"
                        f"    schema_hints: \"{hints}\"\n{extra}")


def bronze_loader(spark, mode: str, hints: str, timeline: Timeline, details: dict):
    from lake_assets.core import bronze
    from lake_assets.core.layout import Layout

    def prepare(ds: Dataset, out: Path) -> None:  # untimed: the table and its schema from the day before
        lake = lake_config(ds.landing, out, hints, f"    schema_evolution_mode: {mode}\n")
        bronze.ingest(spark, lake, lake.source("telemetry"), [SEED_DAY.isoformat()], log=lambda _: None)

    def load(ds: Dataset, out: Path):
        lake = lake_config(ds.landing, out, hints, f"    schema_evolution_mode: {mode}\n")
        source = lake.source("telemetry")
        timeline.reset()
        try:
            result = bronze.ingest(spark, lake, source, [DAY.isoformat()], log=lambda _: None)
            timeline.mark("returned")
        except bronze.NewColumnsError as exc:
            stop = Outcome(failed=f"stops at the {len(exc.fields)} new fields, by design")
            return lambda: stop
        finally:
            details[(f"bronze {mode}", ds.name)] = timeline.snapshot()
        if result.failed:
            return lambda: Outcome(failed=f"{len(result.failed)} file(s) failed: {next(iter(result.failed.values()))}")
        return lambda: Outcome(rows_out=result.records, quarantine=result.malformed, fields=where_new_fields(
            result.schema, rescued_paths(spark, Layout(lake.warehouse, source.name).bronze,
                                         source.rescued_data_column)))
    load.prepare = prepare
    return load


def rescued_paths(spark, table: str, column: str) -> set[str]:
    """Which NEW_FIELDS occur in the rescued column (as their JSON keys)."""
    from pyspark.sql import functions as F

    leaf = {p: p.rsplit(".", 1)[-1] for p in NEW_FIELDS}  # the key's end: signals[0].unit, device.fw.patch
    counts = spark.read.format("delta").load(table).agg(*[
        F.sum(F.col(column).contains(f'{name}":').cast("int")).alias(name) for name in leaf.values()]).first()
    return {p for p, name in leaf.items() if counts[name]}


def load_pyarrow(ds: Dataset, out: Path):
    import pyarrow as pa
    import pyarrow.json as pj
    from deltalake import write_deltalake

    table = pa.concat_tables([pj.read_json(p) for p in ds.paths], promote_options="permissive")
    write_deltalake(str(out), table, mode="append")
    return lambda: delta_outcome(out)


def load_duckdb(ds: Dataset, out: Path):
    import duckdb
    from deltalake import write_deltalake

    with duckdb.connect() as con:
        batches = con.sql(f"SELECT * FROM read_json_auto({ds.paths!r}, union_by_name = true)").arrow()
        write_deltalake(str(out), batches, mode="append")
    return lambda: delta_outcome(out)


def load_polars(ds: Dataset, out: Path):
    import polars as pl

    frames = [pl.read_ndjson(p, infer_schema_length=None) for p in ds.paths]
    pl.concat(frames, how="diagonal_relaxed").write_delta(str(out), mode="append")
    return lambda: delta_outcome(out)


def load_dlt(ds: Dataset, out: Path):
    import dlt
    import orjson

    def records():
        for p in ds.paths:
            with open(p, "rb") as fh:
                yield from (orjson.loads(line) for line in fh if line.strip())

    pipeline = dlt.pipeline(pipeline_name=f"bench_{out.name}", pipelines_dir=str(out / "_dlt"),
                            destination=dlt.destinations.filesystem(str(out)), dataset_name="bench")
    pipeline.run(records(), table_name="telemetry", table_format="delta")
    return lambda: delta_outcome(out / "bench" / "telemetry")


def systems(spark, args, timeline: Timeline, details: dict) -> dict:
    """label -> load; the first one is the raw ceiling the ratios divide by."""
    out = {"Sail read.json -> Delta (raw)": lambda ds, o: load_raw(spark, ds, o)}
    for mode in MODES:
        out[f"bronze {mode}"] = bronze_loader(spark, mode, args.hints, timeline, details)
    out.update({"pyarrow.json + write_deltalake": load_pyarrow, "DuckDB read_json_auto + write_deltalake": load_duckdb,
                "polars read_ndjson + write_delta": load_polars})
    try:
        import dlt  # noqa: F401  (optional: not in the project's venv)

        out["dlt -> Delta"] = load_dlt
    except ImportError:
        print("dlt is not importable here: left out (run from a venv with dlt[deltalake] to include it)")
    return out


# ---------------------------------------------------------------- measuring

def measure(loads: dict, datasets: list[Dataset], work: Path, repeat: int) -> dict:
    """Round i runs every system once on each data set, each into a fresh folder (removed after;
    load.prepare, where there is one, sets it up untimed), so warm-up and machine drift fall on all
    alike. {(label, data set): {"runs": [s], "outcome"}}. A system that fails on a data set is not
    run on it again."""
    results: dict = {}
    for i in range(repeat):
        for ds in datasets:
            for label, load in loads.items():
                got = results.setdefault((label, ds.name), {"runs": [], "outcome": None})
                if got["outcome"] is not None and got["outcome"].failed:
                    continue
                out = work / "out" / f"{len(results)}-{i}"
                shutil.rmtree(out, ignore_errors=True)
                if hasattr(load, "prepare"):
                    load.prepare(ds, out)
                start, cpu = time.perf_counter(), process_cpu()
                try:
                    check = load(ds, out)
                except Exception as exc:  # the system does not survive this data
                    error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                    check = lambda error=error: Outcome(failed=error)  # noqa: E731
                seconds, cpu = time.perf_counter() - start, process_cpu() - cpu
                outcome = got["outcome"] = check()
                if not outcome.failed:
                    got["runs"].append(seconds)
                    got.setdefault("cpu", []).append(cpu)
                shutil.rmtree(out, ignore_errors=True)
                shown = outcome.failed or f"{outcome.rows_out} rows + {outcome.quarantine} quarantined"
                print(f"  round {i + 1}  {ds.name:<8} {label:<40} {seconds:7.2f} s  {ds.bytes / MB / seconds:7.1f} MB/s"
                      f"  {cpu:6.2f} CPU s  load {os.getloadavg()[0]:5.2f}"
                      f"  {shown[:150]}", flush=True)
    return results


def process_cpu() -> float:
    """CPU seconds of this process, all threads (the embedded engine's too): less bent by other
    processes' load than wall time."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median(runs: list[float]) -> float:
    runs = sorted(runs)
    return runs[len(runs) // 2] if len(runs) % 2 else (runs[len(runs) // 2 - 1] + runs[len(runs) // 2]) / 2


def new_fields_cell(o: Outcome) -> str:
    """Where the drifting files' new fields went: "columns", "rescued", "dropped", or a mix."""
    kinds = list(o.fields.values())
    if len(set(kinds)) == 1:
        return "columns" if kinds[0] == "column" else kinds[0]
    return ", ".join(f"{kinds.count(k)} {k}" for k in ("column", "rescued", "dropped") if k in kinds)


def table(results: dict, loads: dict, datasets: list[Dataset]) -> tuple[list[str], list[dict]]:
    """The report's lines and rows: MB/s and ratio to raw per data set, survival, rows, new fields."""
    raw = next(iter(loads))
    rows = []
    for label in loads:
        row = {"system": label}
        for ds in datasets:
            got = results[(label, ds.name)]
            o = got["outcome"]
            row[ds.name] = ds.bytes / MB / median(got["runs"]) if got["runs"] else None
            # the median of each round's ratio: both ran close in time, whatever the machine's load did
            ratios = [b / s for b, s in zip(results[(raw, ds.name)]["runs"], got["runs"])]
            row[f"{ds.name}_ratio"] = median(ratios) if ratios else None
            row[f"{ds.name}_cpu"] = median(got["cpu"]) if got.get("cpu") else None
            row[f"{ds.name}_lost"] = None if o.failed else ds.records - o.rows_out - o.quarantine
        drift = results[(label, datasets[-1].name)]["outcome"]
        row["survives"] = ("no: fails on the conflict (MB/s: a conflict-free twin)" if label == raw
                           else f"no: {drift.failed[:60]}" if drift.failed else "yes")
        lost = [(ds.name, row[f"{ds.name}_lost"]) for ds in datasets if row[f"{ds.name}_lost"] is not None]
        row["nothing_lost"] = "yes" if all(n == 0 for _, n in lost) else \
            "NO: " + ", ".join(f"{name} {n} rows missing" for name, n in lost if n)
        row["new_fields"] = new_fields_cell(drift) if not drift.failed else "-"
        rows.append(row)

    def num(v, fmt):
        return format(v, fmt) if v is not None else "-"
    head = ["system", "clean MB/s", "ratio", "CPU s", "drifting MB/s", "ratio", "CPU s", "survives drift",
            "rows in = out + quarantine", "new fields (drifting)"]
    cells = [[r["system"], num(r["clean"], ".1f"), num(r["clean_ratio"], ".2f"), num(r["clean_cpu"], ".2f"),
              num(r["drifting"], ".1f"), num(r["drifting_ratio"], ".2f"), num(r["drifting_cpu"], ".2f"),
              r["survives"], r["nothing_lost"], r["new_fields"]] for r in rows]
    widths = [max(len(c[i]) for c in [head] + cells) for i in range(len(head))]
    right = {1, 2, 3, 4, 5, 6}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells_, widths)))
             for cells_ in [head] + cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines, rows


def bronze_details(details: dict, datasets: list[Dataset], results: dict) -> None:
    print("\nbronze, Python inside the data sources (last run; busy = wall time while any partition ran; records "
          "walked = records typed one by one by the Fitter instead of in Arrow):")
    for (label, name), d in sorted(details.items()):
        runs = results[(label, name)]["runs"]
        total = median(runs) if runs else 0
        busy = "  ".join(f"{k} {d['busy'].get(k, 0):5.2f} s ({d['cpu'].get(k, 0):5.2f} CPU)"
                         for k in ("scan", "typed", "malformed"))
        print(f"  {label:<24} {name:<8} {total:6.2f} s  {busy}  files from the scan's parse "
              f"{d['typed_files']}/{d['files']}, records walked {d['walked']}")
        previous, steps = (0.0, 0.0), []
        for point, at, cpu in d["points"]:
            steps.append(f"{point} +{at - previous[0]:.2f} ({cpu - previous[1]:.2f} CPU)")
            previous = at, cpu
        print(f"    checkpoints (s since the previous, process CPU s): {', '.join(steps)}")


# ---------------------------------------------------------------- other framings

FRAMINGS = {  # name -> (source config keys, how the NDJSON records of one file are written)
    "array": ("    multiline: true\n", lambda records: b"[" + b",\n".join(records) + b"]"),
    "multiline": ("    multiline: true\n", lambda records: b"\n".join(
        json.dumps(json.loads(r), indent=2).encode() for r in records)),
    "concatenated": ("", lambda records: b"".join(records)),  # Firehose: detected, no config
    "records_path": ("    records_path: Records\n", lambda records: b"\n".join(
        b'{"Records":[' + b",".join(records[i:i + 100]) + b"]}" for i in range(0, len(records), 100))),
}


def measure_framings(spark, ds: Dataset, work: Path, hints: str, repeat: int) -> None:
    """The drifting records in each other framing, loaded by bronze (addNewColumns): MB/s of its own bytes."""
    from lake_assets.core import bronze

    print("\nother framings (the drifting records; bronze addNewColumns; MB/s of each framing's own bytes):")
    for name, (extra, write) in FRAMINGS.items():
        landing, nbytes = work / "framings" / name, 0
        for path in ds.paths:
            target = landing / Path(path).relative_to(ds.landing)
            target.parent.mkdir(parents=True, exist_ok=True)
            body = write([line for line in Path(path).read_bytes().split(b"\n") if line.strip()])
            target.write_bytes(body)
            nbytes += len(body)
        runs = []
        for i in range(repeat):
            lake = lake_config(landing, work / 'out' / name / str(i), hints, extra)
            start = time.perf_counter()
            result = bronze.ingest(spark, lake, lake.source("telemetry"), [DAY.isoformat()], log=lambda _: None)
            runs.append(time.perf_counter() - start)
        print(f"  {name:<13} {median(runs):6.2f} s  {nbytes / MB / median(runs):7.1f} MB/s  {result.records} records")


# ---------------------------------------------------------------- profile one file

def profile_passes(path: str, hints: str, top: int) -> None:
    """cProfile, outside Spark, the passes over one drifting file in rescue mode (the table has the
    day-1 schema): the scan (pyarrow parse and inference), lake_typed from the scan's parse, and
    lake_typed walking every line through the Fitter."""
    from lake_assets.core import pyarrow_scan, reader, typed_rows
    from lake_assets.core.schema import apply_hints

    lake = lake_config("/tmp", "/tmp", hints)
    day_one = pyarrow_scan.scan_bytes((Path(path).parent / "part-000.json").read_bytes())["schema"]
    target = apply_hints(day_one, lake.source("telemetry").hints)
    size = os.path.getsize(path)
    info = {"uri": path, "size": size, "day": DAY.isoformat(), "malformed": []}
    typed_options = {"schema": typed_rows.declared_schema(target).json(), "target": target.json(),
                     "table": target.json(), "rescued_column": "_rescued_data", "rescue_unknown": "true"}
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
    parser.add_argument("--mb", "--size", type=int, default=300, help="MB of NDJSON per data set (default 300)")
    parser.add_argument("--files", type=int, default=40, help="number of files per data set (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3); medians are reported")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 MB, 8 files, 1 round (< 1 minute)")
    parser.add_argument("--only", help="comma-separated substrings: run only the systems whose label has one "
                                       "(raw always runs: the ratios need it)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="work folder (default: a temp folder, removed afterwards)")
    parser.add_argument("--hints", default="event_id STRING, recorded_at TIMESTAMP",
                        help="the source's schema_hints (default: the demo's, %(default)r)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the passes over one drifting file")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--framings", action="store_true",
                        help="also load the drifting records as one array per file, pretty-printed documents, "
                             "concatenated objects (Firehose) and {\"Records\": [...]} envelopes")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.files, args.repeat = 8, 8, 1

    os.environ.setdefault("RUST_LOG", "error")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bronze_bench_"))
    try:
        for folder in ("clean", "drifting", "clean-twin", "drifting-twin", "out", "framings"):
            shutil.rmtree(work / folder, ignore_errors=True)
        start = time.perf_counter()
        datasets = [generate(work, "clean", args.mb, args.files, args.seed, drift=False),
                    generate(work, "drifting", args.mb, args.files, args.seed, drift=True)]
        for ds in datasets:
            print(f"{ds.name}: {ds.bytes / MB:.1f} MB, {ds.records} records in {len(ds.paths)} files")
        print(f"generated in {time.perf_counter() - start:.1f} s ({work})", flush=True)

        from lake_assets.engine import spark_session

        timeline = Timeline()
        timeline.install()
        spark = spark_session()
        spark.range(1).collect()  # server start-up is not part of any run
        load_before = os.getloadavg()
        print(f"engine: embedded Sail, {os.cpu_count()} cores; load average {load_before[0]:.2f} "
              f"{load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
        details: dict = {}
        loads = systems(spark, args, timeline, details)
        if args.only:
            wanted = [w.strip() for w in args.only.split(",")]
            loads = {k: v for i, (k, v) in enumerate(loads.items()) if i == 0 or any(w in k for w in wanted)}
        results = measure(loads, datasets, work, args.repeat)

        lines, rows = table(results, loads, datasets)
        load_after = os.getloadavg()
        print(f"\n{args.mb} MB x 2 data sets, {args.files} files each, {args.repeat} round(s) interleaved, medians; "
              f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
              f"(ratio: the median of each round's ratio to raw; drifting raw reads a conflict-free twin)")
        print("\n".join(lines))
        bronze_details(details, datasets, results)
        if args.framings:
            measure_framings(spark, datasets[1], work, args.hints, args.repeat)
        if args.profile:
            profile_passes(datasets[1].paths[-1], args.hints, 15)
        if args.json:
            Path(args.json).write_text(json.dumps({"mb": args.mb, "files": args.files, "repeat": args.repeat,
                                                   "load_average": [load_before, load_after], "rows": rows,
                                                   "runs": {f"{k[0]} / {k[1]}": v["runs"] for k, v in results.items()}},
                                                  indent=2, default=str))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
