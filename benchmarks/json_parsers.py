"""What each available JSON parser costs on bronze's data, and what it gets wrong (issue 15).

    .venv/bin/python benchmarks/json_parsers.py --mb 100 --files 20 --rounds 5
    .venv/bin/python benchmarks/json_parsers.py --quick        # a smoke run: 8 MB, 4 files, 1 round

Bronze must reach 0.6 of the raw engine (Sail spark.read.json -> Delta), and it parses every file
with pyarrow.json, because pyarrow is exact and, with a schema, strict (the reader falls back to a
Python walk where pyarrow's result could differ). This measures whether another parser would buy
the difference: the clean data set of bronze_throughput.generate (nested device telemetry NDJSON,
--mb MB in --files files, read into memory first), parsed by each parser below, interleaved over
--rounds rounds (round i runs every parser once over all files), medians. Single-threaded where
the parser has the option. CPU seconds are the process's (resource.getrusage: all threads, the
embedded engine's too), which the machine's other load bends far less than wall time.

  pyarrow.json (arrow_read)   pyarrow_scan.arrow_read(data): read_json as the scan calls it (one
                              block = the whole file, use_threads=False, types inferred)
  pyarrow_scan.scan_bytes     our whole per-file scan: that parse plus the checks that prove it exact
  pyarrow.json, schema+error  arrow_read(data, schema, "error"): explicit_schema, unexpected fields fail
  orjson.loads per line       parse only (Python objects, no columns, no types)
  polars.read_ndjson          with the schema given (POLARS_MAX_THREADS=1 unless set)
  arrow-json (arro3.io)       arro3.io.read_json(data, schema), consumed (the `bench` extra)
  Sail read.schema().json()   spark.read.schema(schema).json(files) written to format "noop" (every
                              column decoded; an aggregate over one leaf lets the engine prune the
                              rest, so the count-only and the aggregate runs are shown beside it)

`schema` is the table's: what pyarrow infers for the first file (all files share it). Every
parser's row count is checked against pyarrow's in every round (the noop write returns none: the
count query's stands for it), and the first file's table from each columnar parser with a schema
is compared with pyarrow's before anything is timed.

The column "exact & strict" comes from conformance(): one-line NDJSON cases read by each parser
with the case's table schema given (where it takes one): 5.5 into BIGINT, "7" into BIGINT, 5 into
STRING, an unknown field, 1700000000 into TIMESTAMP, two objects on one line, an integer past 64
bits. What came out is compared with Python's own json.loads of the line (exact integers; it
rejects two objects on a line): a case is "rejected" (the parser failed: strict), "exact" (the same
values came out, e.g. an inferring parser giving 5.5 as a double) or lenient ("5.5->5": it read the
line silently into something else). Parsers without a schema (arrow_read, orjson, scan_bytes) read
the cases inferring, so the schema cases say only that they keep the value for the caller to check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bronze_throughput import MB, generate, median, process_cpu  # noqa: E402

import pyarrow as pa  # noqa: E402

# ---------------------------------------------------------------- conformance

CASES = [  # (name, the table's type of `a`, the line)
    ("5.5 into BIGINT", pa.int64(), b'{"a":5.5}'),
    ('"7" into BIGINT', pa.int64(), b'{"a":"7"}'),
    ("5 into STRING", pa.string(), b'{"a":5}'),
    ("unknown field b", pa.int64(), b'{"a":1,"b":2}'),
    ("1700000000 into TIMESTAMP", pa.timestamp("us", tz="UTC"), b'{"a":1700000000}'),
    ("two objects on one line", pa.int64(), b'{"a":1}{"a":2}'),
    ("integer past 64 bits", pa.int64(), b'{"a":18446744073709551616}'),
]


def reference(line: bytes):
    """The line's records as Python's json reads them (exact integers), or None if it rejects it."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return [value]


def _same(a, b) -> bool:
    """Equal values of the same JSON type (5 != 5.0 != "5", 2**64 != 1.8e19, missing == null)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same(a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _show(v) -> str:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return json.dumps(v) if isinstance(v, (str, int, float, type(None))) else str(v)


def judge(line: bytes, got) -> tuple[str, str]:
    """(verdict, what came out): got is the records a parser produced, or an exception."""
    if isinstance(got, BaseException):
        return "rejected", f"{type(got).__name__}: {str(got).strip().splitlines()[0][:100]}" if str(got) else \
            type(got).__name__
    want = reference(line)
    if want is None:
        return "lenient", f"{len(got)} records: {' '.join(_show(r) for r in got)}"
    if _same(want, got):
        return "exact", _show(got[0])
    if len(got) != len(want):
        return "lenient", f"{len(got)} records"
    diffs = []
    for key in sorted(set(want[0]) | set(got[0])):
        w, g = want[0].get(key), got[0].get(key)
        if _same(w, g):
            continue
        diffs.append(f"unknown field {key} dropped" if g is None else f"{_show(w)}->{_show(g)}")
    return "lenient", ", ".join(diffs)


def conformance(read, schema_given: bool = True) -> list[dict]:
    """Run `read(ndjson bytes, pa.Schema | None) -> list of records` on every case (schema None when
    the parser takes none) and judge what came out. [{case, verdict, out}]"""
    out = []
    for name, kind, line in CASES:
        try:
            got = read(line + b"\n", pa.schema([("a", kind)]) if schema_given else None)
        except Exception as exc:  # noqa: BLE001  (a failure is the strict answer)
            got = exc
        verdict, shown = judge(line, got)
        out.append({"case": name, "verdict": verdict, "out": shown})
    return out


def conformance_cell(results: list[dict], schema_given: bool) -> str:
    lenient = [r["out"] if r["case"] != "two objects on one line" else f"two objects on a line -> {r['out']}"
               .split(":")[0] for r in results if r["verdict"] == "lenient"]
    kept = [r for r in results if r["verdict"] == "exact"]
    if not lenient:
        head = "yes" if not kept else f"yes (rejects {len(results) - len(kept)}/{len(results)}, " \
                                      f"keeps {len(kept)} exactly)"
    else:
        head = "no: lenient: " + ", ".join(lenient)
    return head if schema_given else f"{head} [no schema: infers]"


# ---------------------------------------------------------------- the parsers
# Each: parse(list of file bytes) -> rows (timed), records(bytes, schema) for the conformance check.

def _rows(table) -> list[dict]:
    return table.to_pylist()


def pyarrow_parsers(schema: pa.Schema) -> dict:
    from lake_assets.core import pyarrow_scan

    def read_inferred(data, _schema=None):
        table = pyarrow_scan.arrow_read(data)
        if table is None:  # _arrow_try's failure, as an exception for the check
            raise ValueError(pyarrow_scan._arrow_try(data)[1])
        return _rows(table)

    def read_strict(data, case_schema):
        table, why = pyarrow_scan._arrow_try(data, case_schema, "error")
        if table is None:
            raise ValueError(why)
        return _rows(table)

    def scan_records(data, _schema=None):
        """What the scan makes of a case: its records as the Python walk reads them, where it fell
        back, and for the arrow engine pyarrow's parse; malformed lines rejected."""
        from lake_assets.core.records import parse_line

        result = pyarrow_scan.scan_bytes(data)
        if result["malformed"]:
            raise ValueError(f"malformed line(s) {result['malformed']}")
        if result["engine"] == "arrow":
            return _rows(pyarrow_scan.arrow_read(data))
        return [parse_line(line) for line in data.split(b"\n") if line.strip()]

    return {
        "pyarrow.json (arrow_read)": (
            lambda files: sum(pyarrow_scan.arrow_read(d).num_rows for d in files), read_inferred, False),
        "pyarrow_scan.scan_bytes": (
            lambda files: sum(pyarrow_scan.scan_bytes(d)["records"] for d in files), scan_records, False),
        "pyarrow.json, schema+error": (
            lambda files: sum(pyarrow_scan.arrow_read(d, schema, "error").num_rows for d in files), read_strict, True),
    }


def orjson_parser() -> dict:
    import orjson

    def parse(files):
        n = 0
        for d in files:
            n += len([orjson.loads(line) for line in d.split(b"\n") if line])
        return n

    return {"orjson.loads per line": (parse, lambda d, _s=None: [orjson.loads(x) for x in d.split(b"\n") if x],
                                      False)}


def polars_parser(schema: pa.Schema) -> dict:
    try:
        import polars as pl
    except ImportError:
        print("polars is not importable here: left out (install the project's `bench` extra)")
        return {}

    def pl_schema(s: pa.Schema):
        return pl.from_arrow(s.empty_table()).schema

    table_schema = pl_schema(schema)

    def read(d, s):
        return pl.read_ndjson(io.BytesIO(d), schema=pl_schema(s)).to_arrow().to_pylist()

    return {f"polars.read_ndjson, schema ({pl.thread_pool_size()} thr)": (
        lambda files: sum(pl.read_ndjson(io.BytesIO(d), schema=table_schema).height for d in files), read, True)}


def arro3_parser(schema: pa.Schema) -> dict:
    try:
        from arro3.io import read_json
    except ImportError:
        print("arrow-json (arro3.io) is not importable here: left out (install the project's `bench` extra)")
        return {}

    def table(d, s):
        return pa.table(pa.RecordBatchReader.from_stream(read_json(d, s)))

    return {"arrow-json (arro3.io), schema": (lambda files: sum(table(d, schema).num_rows for d in files),
                                              lambda d, s: _rows(table(d, s)), True)}


def sail_parsers(schema: pa.Schema, paths: list[str], work: Path) -> dict:
    """Sail's reader (DataFusion's arrow-json) in three queries; the first is the one in the table's ratio column."""
    try:
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        from lake_assets.engine import spark_session
    except ImportError as exc:
        print(f"Sail is not importable here ({exc}): left out")
        return {}
    spark = spark_session()
    spark.range(1).collect()  # the server's start-up is not part of any run
    spark_schema = from_arrow_schema(schema)
    cases = work / "cases"
    cases.mkdir(parents=True, exist_ok=True)

    def reader(s):
        return spark.read.schema(s).json(paths)

    def noop(_files):
        reader(spark_schema).write.format("noop").mode("overwrite").save()
        return None  # noop returns nothing: the count is checked by the count query

    def count(_files):
        return reader(spark_schema).count()

    def agg(_files):
        return reader(spark_schema).agg(F.count(F.lit(1)).alias("n"), F.sum("site.geo.lat")).first()["n"]

    def read(d, s):
        path = cases / f"case-{len(list(cases.iterdir()))}.json"
        path.write_bytes(d)
        return [r.asDict(recursive=True) for r in spark.read.schema(from_arrow_schema(s)).json(str(path)).collect()]

    print("Sail, does each query decode every column? (a file whose last line has a number in a STRING column "
          "that no query names; Sail's reader fails on it when it decodes that column): "
          + ", ".join(f"{k}: {v}" for k, v in sail_pruning(spark, work).items()))
    return {"Sail read.json, schema -> noop": (noop, read, True),
            "Sail read.json, schema, count()": (count, None, True),
            "Sail read.json, count + sum(lat)": (agg, None, True)}


def sail_pruning(spark, work: Path) -> dict:
    """Which of the benchmark's three queries make Sail decode a column they do not name."""
    from pyspark.sql import functions as F

    path = work / "pruning.json"
    path.write_bytes(b'{"site": {"geo": {"lat": 1.5}}, "unnamed": "x"}\n'
                     b'{"site": {"geo": {"lat": 2.5}}, "unnamed": 5}\n')
    schema = "site STRUCT<geo: STRUCT<lat: DOUBLE>>, unnamed STRING"
    queries = {"noop": lambda df: df.write.format("noop").mode("overwrite").save(),
               "count()": lambda df: df.count(),
               "count + sum(lat)": lambda df: df.agg(F.count(F.lit(1)), F.sum("site.geo.lat")).first()}
    out = {}
    for name, query in queries.items():
        try:
            query(spark.read.schema(schema).json(str(path)))
            out[name] = "prunes (no error)"
        except Exception as exc:  # noqa: BLE001
            out[name] = "decodes every column" if "expected string" in str(exc) else f"fails: {str(exc)[:80]}"
    return out


def parsers(schema: pa.Schema, paths: list[str], work: Path) -> dict:
    """label -> (parse(list of bytes) -> rows or None, read(bytes, schema) -> records or None, takes a schema)."""
    out = pyarrow_parsers(schema)
    out.update(orjson_parser())
    out.update(polars_parser(schema))
    out.update(arro3_parser(schema))
    out.update(sail_parsers(schema, paths, work))
    return out


def agreement(schema: pa.Schema, first: bytes, parsers_: dict) -> dict:
    """For each columnar parser with a schema: does its table of the first file equal pyarrow's?"""
    from lake_assets.core import pyarrow_scan

    want = pyarrow_scan.arrow_read(first, schema, "error")
    out = {}
    for label, (_, read, schema_given) in parsers_.items():
        if not schema_given or read is None or label.startswith("Sail"):
            continue
        try:
            got = read_table(label, first, schema)
            out[label] = "same" if got.equals(want) else "DIFFERS from pyarrow"
        except Exception as exc:  # noqa: BLE001
            out[label] = f"failed: {exc}"
    return out


def read_table(label: str, data: bytes, schema: pa.Schema) -> pa.Table:
    if label.startswith("polars"):
        import polars as pl

        return pl.read_ndjson(io.BytesIO(data), schema=pl.from_arrow(schema.empty_table()).schema).to_arrow() \
            .cast(schema)
    if label.startswith("arrow-json"):
        from arro3.io import read_json

        return pa.table(pa.RecordBatchReader.from_stream(read_json(data, schema)))
    from lake_assets.core import pyarrow_scan

    return pyarrow_scan.arrow_read(data, schema, "error")


# ---------------------------------------------------------------- measuring

def measure(parsers_: dict, files: list[bytes], rounds: int, expected: int) -> dict:
    """label -> {"wall": [s], "cpu": [s], "rows": n}; round i runs every parser once over all files."""
    results = {label: {"wall": [], "cpu": [], "rows": None} for label in parsers_}
    size = sum(map(len, files))
    for i in range(rounds):
        for label, (parse, _, _) in parsers_.items():
            start, cpu = time.perf_counter(), process_cpu()
            rows = parse(files)
            wall, cpu = time.perf_counter() - start, process_cpu() - cpu
            got = results[label]
            got["wall"].append(wall)
            got["cpu"].append(cpu)
            got["rows"] = rows
            if rows is not None and rows != expected:
                print(f"  WARNING: {label} read {rows} rows, pyarrow {expected}")
            print(f"  round {i + 1}  {label:<40} {wall:6.2f} s  {cpu:6.2f} CPU s  {size / MB / cpu:6.1f} MB/CPU-s"
                  f"  load {os.getloadavg()[0]:5.2f}", flush=True)
    return results


def table(results: dict, checks: dict, size: int, base: str) -> tuple[list[str], list[dict]]:
    rows = []
    base_cpu = median(results[base]["cpu"])
    for label, got in results.items():
        cpu, wall = median(got["cpu"]), median(got["wall"])
        rows.append({"parser": label, "mb_per_cpu_s": size / MB / cpu, "cpu_s": cpu, "wall_s": wall,
                     "ratio": base_cpu / cpu, "exact_strict": checks.get(label, "-"), "records": got["rows"],
                     "cpu_runs": got["cpu"], "wall_runs": got["wall"]})
    head = ["parser", "MB/CPU-s", "CPU s", "wall s", "ratio", "exact & strict"]
    cells = [[r["parser"], f"{r['mb_per_cpu_s']:.1f}", f"{r['cpu_s']:.2f}", f"{r['wall_s']:.2f}",
              f"{r['ratio']:.2f}", r["exact_strict"]] for r in rows]
    widths = [max(len(c[i]) for c in [head] + cells) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if 1 <= i <= 4 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [head] + cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines, rows


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="MB of NDJSON (default 100)")
    parser.add_argument("--files", type=int, default=20, help="number of files (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5); medians are reported")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 MB, 4 files, 1 round")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="work folder; a clean data set already there is reused (default: a temp "
                                      "folder, removed afterwards)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.files, args.rounds = 8, 4, 1

    os.environ.setdefault("RUST_LOG", "error")
    os.environ.setdefault("POLARS_MAX_THREADS", "1")  # read when polars is first imported
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="json_parsers_"))
    try:
        folder = work / "clean" / "telemetry"
        paths = sorted(str(p) for p in folder.rglob("part-*.json")) if folder.exists() else []
        if len(paths) != args.files:
            shutil.rmtree(work / "clean", ignore_errors=True)
            shutil.rmtree(work / "clean-twin", ignore_errors=True)
            start = time.perf_counter()
            paths = generate(work, "clean", args.mb, args.files, args.seed, drift=False).paths
            print(f"generated in {time.perf_counter() - start:.1f} s ({work})")
        else:
            print(f"reusing {len(paths)} files in {folder}")
        files = [Path(p).read_bytes() for p in paths]
        size = sum(map(len, files))

        from lake_assets.core import pyarrow_scan

        schema = pyarrow_scan.arrow_read(files[0]).schema
        expected = sum(pyarrow_scan.arrow_read(d).num_rows for d in files)
        print(f"clean: {size / MB:.1f} MB, {expected} records in {len(files)} files; python {sys.version.split()[0]}, "
              f"pyarrow {pa.__version__}; {os.cpu_count()} cores")
        shown = schema.to_string(show_schema_metadata=False).replace("\n", "; ")
        print(f"schema (pyarrow's inference of the first file): {shown}")

        found = parsers(schema, paths, work)
        checks, findings = {}, {}
        for label, (_, read, schema_given) in found.items():
            if read is None:
                continue
            findings[label] = conformance(read, schema_given)
            checks[label] = conformance_cell(findings[label], schema_given)
        for label in found:  # the other Sail queries use the same reader
            if label.startswith("Sail") and label not in checks:
                checks[label] = "(same reader as above)"
        same = agreement(schema, files[0], found)
        print("first file, each schema-given columnar parser's table against pyarrow's: "
              + ", ".join(f"{k}: {v}" for k, v in same.items()))

        load_before = os.getloadavg()
        print(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}; measuring", flush=True)
        results = measure(found, files, args.rounds, expected)
        load_after = os.getloadavg()
        lines, rows = table(results, checks, size, "pyarrow.json (arrow_read)")
        print(f"\n{size / MB:.0f} MB, {len(files)} files, {args.rounds} round(s) interleaved, medians; "
              f"CPU s of the process (all threads); ratio: pyarrow arrow_read's CPU s / the parser's; "
              f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} cores)")
        print("\n".join(lines))
        print("\nconformance (each case's line with the table schema `a <type>` given, where the parser takes one):")
        for label, found_cases in findings.items():
            print(f"  {label}")
            for r in found_cases:
                print(f"    {r['case']:<27} {r['verdict']:<9} {r['out']}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "mb": size / MB, "files": len(files), "rounds": args.rounds, "records": expected,
                "python": sys.version, "pyarrow": pa.__version__, "cores": os.cpu_count(),
                "load_average": [load_before, load_after], "rows": rows, "conformance": findings,
                "agreement": same}, indent=2, default=str))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
