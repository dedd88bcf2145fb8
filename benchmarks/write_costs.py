"""What the embedded engine's Delta write costs bronze, piece by piece (issue 15).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/write_costs.py --mb 150 --files 20 --rounds 5
    PYTHONPATH=$PWD .venv/bin/python benchmarks/write_costs.py --quick      # a smoke run: 8 MB, 1 round

The clean data set of bronze_throughput.generate is parsed once with pyarrow (as the scan does) and
kept in memory. Every round then hands the same Arrow batches to Sail through a Python data source
(as lake_typed does) and writes them, interleaved, medians of the process's CPU seconds:

  handover          batches -> write.format("noop"): what giving Arrow batches to the engine costs
  write             -> Delta, unpartitioned
  + audit columns   with bronze's _rescued_data, _source_file, _line, _record, _landing_date,
                    _ingested_at, _batch_id, unpartitioned
  + partitioned     the same, partitionBy(_landing_date) as bronze is (every row has one date)
  raw parse         spark.read.schema(s).json(files) -> noop: Sail's own reader, every column decoded
  raw               spark.read.schema(s).json(files) -> Delta: the raw engine's load, unpartitioned

The data source lives in this module, imported by name: a data source defined in `__main__` is
pickled by value with the globals it uses (here: every table), which would be measured instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bronze_throughput import DAY, MB, generate, median, process_cpu  # noqa: E402

from lake_assets.core.layout import BATCH_ID, INGESTED_AT, LANDING_DATE, LINE, RECORD, SOURCE_FILE  # noqa: E402

TABLES: list[pa.Table] = []   # what the data source yields, set by main() before each write
AUDIT = ["_rescued_data", SOURCE_FILE, LINE, RECORD, LANDING_DATE]   # per row, as lake_typed yields them


class _Part(InputPartition):
    def __init__(self, indexes: list[int]):
        self.indexes = indexes


class _Reader(DataSourceReader):
    def partitions(self):
        return [_Part(list(range(i, len(TABLES), 2))) for i in range(min(2, len(TABLES)))]

    def read(self, partition):
        for i in partition.indexes:
            yield from TABLES[i].to_batches()


class CachedTables(DataSource):
    @classmethod
    def name(cls):
        return "bench_cached_tables"

    def schema(self):
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(TABLES[0].schema)

    def reader(self, schema):
        return _Reader()


def with_audit(table: pa.Table, uri: str) -> pa.Table:
    """The table with bronze's per-row audit columns (as typed_rows.typed_batch builds them)."""
    n = table.num_rows
    repeat = pa.array(np.zeros(n, np.int64))
    return pa.table(list(table.columns) + [pa.nulls(n, pa.string()), pa.array([uri]).take(repeat),
                                           pa.array(np.arange(1, n + 1)), pa.nulls(n, pa.int64()),
                                           pa.array([DAY.isoformat()]).take(repeat)],
                    names=table.column_names + AUDIT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=150, help="MB of NDJSON (default 150)")
    parser.add_argument("--files", type=int, default=20, help="number of files (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5); medians are reported")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 MB, 4 files, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.files, args.rounds = 8, 4, 1

    import write_costs  # this module by name, so the engine imports the data source instead of unpickling it
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    from lake_assets.core import pyarrow_scan
    from lake_assets.engine import spark_session

    work = Path(tempfile.mkdtemp(prefix="write_costs_"))
    try:
        paths = generate(work, "clean", args.mb, args.files, 7, drift=False).paths
        size = sum(os.path.getsize(p) for p in paths)
        parsed = [pyarrow_scan.arrow_read(Path(p).read_bytes()) for p in paths]
        schema = to_arrow_schema(from_arrow_schema(parsed[0].schema))   # list fields named `element`
        plain = [t.cast(schema) for t in parsed]
        audited = [with_audit(t, p) for t, p in zip(plain, paths)]
        spark = spark_session()
        spark.dataSource.register(write_costs.CachedTables)
        spark_schema = from_arrow_schema(parsed[0].schema)
        out = str(work / "out")

        def batches(tables, then):
            write_costs.TABLES[:] = tables
            return then(spark.read.format("bench_cached_tables").load())

        def write(df, partition_by=None):
            writer = df.write.format("delta").mode("append")
            (writer.partitionBy(partition_by) if partition_by else writer).save(out)

        def audit(df):  # the audit columns bronze adds in the engine (BatchPlan.audit)
            return df.withColumn(INGESTED_AT, F.lit("2026-11-18 00:00:00").cast("timestamp")) \
                .withColumn(BATCH_ID, F.lit("00000000-0000-0000-0000-000000000000"))

        loads = {
            "handover (-> noop)": lambda: batches(plain, lambda df: df.write.format("noop").mode("overwrite").save()),
            "write (-> Delta)": lambda: batches(plain, write),
            "+ audit columns": lambda: batches(audited, lambda df: write(audit(df))),
            "+ partitioned by _landing_date": lambda: batches(audited, lambda df: write(audit(df), LANDING_DATE)),
            "raw parse (read.json -> noop)": lambda: spark.read.schema(spark_schema).json(paths)
            .write.format("noop").mode("overwrite").save(),
            "raw (read.json -> Delta)": lambda: spark.read.schema(spark_schema).json(paths)
            .write.format("delta").mode("append").save(out),
        }
        spark.range(1).collect()
        cpu: dict[str, list[float]] = {name: [] for name in loads}
        wall: dict[str, list[float]] = {name: [] for name in loads}
        load_before = os.getloadavg()[0]
        for _ in range(args.rounds):
            for name, load in loads.items():
                shutil.rmtree(out, ignore_errors=True)
                started, cpu0 = time.perf_counter(), process_cpu()
                load()
                cpu[name].append(process_cpu() - cpu0)
                wall[name].append(time.perf_counter() - started)
        base = median(cpu["write (-> Delta)"])
        print(f"\n{size / MB:.0f} MB of NDJSON in {len(paths)} files ({sum(t.num_rows for t in plain)} rows), "
              f"{args.rounds} round(s), medians; load average {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)")
        head = f"{'':34} {'CPU s':>7} {'wall s':>7} {'CPU / write':>12}"
        print(head + "\n" + "-" * len(head))
        for name in loads:
            print(f"{name:34} {median(cpu[name]):7.2f} {median(wall[name]):7.2f} {median(cpu[name]) / base:12.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
