"""Bronze MB/s of each framing next to NDJSON, and whether framings cost NDJSON anything.

    .venv/bin/python benchmarks/framing_throughput.py --mb 100     # 100 MB per input (issue 11's size)
    .venv/bin/python benchmarks/framing_throughput.py --quick      # a smoke run: 4 MB, 1 round

The same records (bronze_throughput.generate: drifting device telemetry with type conflicts) as
NDJSON and in each other framing (bronze_throughput.FRAMINGS: one array per file, pretty-printed
documents, concatenated objects as Firehose writes them, `{"Records": [...]}` envelopes), each
about --mb MB in --files files. Every round runs every path once, each into a fresh warehouse,
interleaved, so machine drift falls on all paths alike; the table gives the medians:

  raw           spark.read.json(NDJSON, its clean twin) -> Delta: the engine's own read, the baseline
  ndjson        bronze.ingest of the NDJSON
  ndjson-bare   the same with framing bypassed (framing.frame hands the bytes on as they are, no
                concatenated-values detection, no BINARY paths): the reader as it was before framings
  array, multiline, concatenated, records_path   bronze.ingest of each framing

MB/s is of each input's own bytes (pretty-printing makes `multiline` larger). `ndjson / raw` must not
fall below `ndjson-bare / raw` (beyond the spread of the rounds, which the table shows). The machine
may be shared: the load average before and after is printed with the figures. Wall times on a loaded
machine spread widely, so the scan of the NDJSON (where framing runs) is also timed alone, outside
the engine, with framing and bypassed, interleaved: CPU seconds of this process (pyarrow's threads
included), which the other processes' load disturbs far less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bronze_throughput import FRAMINGS, MB, Timeline, generate, reframe, run_bronze, run_plain  # noqa: E402

HINTS = "event_id STRING, recorded_at TIMESTAMP"


@contextmanager
def framing_bypassed():
    """The reader without framings: frame() returns the bytes as NDJSON, nothing is split or typed BINARY."""
    from lake_assets.core import framing

    saved = framing.frame, framing.concatenated, framing.with_binary
    framing.frame = lambda data, _framing, split=False, cut=False: framing.Framed(data, False)
    framing.concatenated = lambda *args, **kwargs: None
    framing.with_binary = lambda schema, paths: schema
    try:
        yield
    finally:
        framing.frame, framing.concatenated, framing.with_binary = saved


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def paths(spark, work: Path, ndjson: list[str], clean: list[str], framed: dict[str, str]) -> dict:
    """{name: fn(round) -> rows}; each call writes into a fresh folder."""
    out, timeline = work / "out", Timeline()
    landing = str(work / "landing")  # where generate wrote the NDJSON

    def bronze(name: str, root: str, extra: str = ""):
        return lambda i: run_bronze(spark, root, str(out / f"{name}{i}"), timeline, HINTS, extra)[0].records

    def bare(i: int) -> int:
        with framing_bypassed():
            return bronze("bare", landing)(i)

    runs = {"raw": lambda i: run_plain(spark, clean, str(out / f"raw{i}")), "ndjson": bronze("ndjson", landing),
            "ndjson-bare": bare}
    runs.update({name: bronze(name, root, FRAMINGS[name][0]) for name, root in framed.items()})
    return runs


def scan_cpu(files: list[str], rounds: int) -> dict[str, list[float]]:
    """CPU seconds of the scan pass (reader._ScanReader) over `files`, with framing and bypassed."""
    import json

    from lake_assets.core import reader

    infos = [{"uri": f, "size": os.path.getsize(f), "day": "2026-11-18", "framing": {}} for f in files]
    scanner = reader._ScanReader({"files": json.dumps(infos), "keep_parsed": "false"})
    cpu: dict[str, list[float]] = {"scan": [], "scan-bare": []}
    for _ in range(rounds):
        for name in cpu:
            with framing_bypassed() if name == "scan-bare" else _nothing():
                start = time.process_time()
                for _row in scanner.read(reader._Files(infos)):
                    pass
                cpu[name].append(time.process_time() - start)
    return cpu


@contextmanager
def _nothing():
    yield


def measure(runs: dict, rounds: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    rows: dict[str, int] = {}
    runs["ndjson"]("warm-up")  # the first ingest of a process pays its imports and first plans: no path's
    for i in range(rounds):
        for name, fn in runs.items():
            start = time.perf_counter()
            rows[name] = fn(i)
            times[name].append(time.perf_counter() - start)
        print(f"  round {i + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    return times, rows


def table(times: dict[str, list[float]], rows: dict[str, int], sizes: dict[str, int]) -> list[str]:
    raw = sizes["raw"] / MB / statistics.median(times["raw"])
    head = f"{'path':<13} {'MB':>7} {'rows':>9} {'median s':>9} {'MB/s':>7} {'/ raw':>6}  rounds (s)"
    lines = [head, "-" * len(head)]
    for name, runs in times.items():
        mb_s = sizes[name] / MB / statistics.median(runs)
        lines.append(f"{name:<13} {sizes[name] / MB:7.1f} {rows[name]:9d} {statistics.median(runs):9.2f} "
                     f"{mb_s:7.1f} {mb_s / raw:6.2f}  {' '.join(f'{t:.2f}' for t in runs)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="MB of each input (default 100)")
    parser.add_argument("--files", type=int, default=20, help="files per input (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: --mb 4 --files 4 --rounds 1")
    parser.add_argument("--only", help="comma-separated paths to run besides raw and ndjson (default: all)")
    parser.add_argument("--scan-rounds", type=int, default=7, help="rounds of the scan CPU timing (default 7)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="work folder (default: a temp folder, removed afterwards)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mb, args.files, args.rounds = 4, 4, 1

    os.environ.setdefault("RUST_LOG", "error")
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="framing_bench_"))
    shutil.rmtree(work / "out", ignore_errors=True)
    try:
        ndjson, clean, nbytes = generate(work, args.mb, args.files, args.seed)
        framed, sizes = {}, {"raw": nbytes, "ndjson": nbytes, "ndjson-bare": nbytes}
        for name in FRAMINGS:
            framed[name], sizes[name] = reframe(ndjson, work / "framings", name)
        print(f"inputs: {nbytes / MB:.1f} MB of NDJSON in {len(ndjson)} files, and each framing ({work})", flush=True)

        from lake_assets.engine import spark_session

        spark = spark_session()
        spark.range(1).collect()  # server start-up is no path's
        before = load()
        print(f"{os.cpu_count()} cores; before: {before}", flush=True)
        runs = paths(spark, work, ndjson, clean, framed)
        if args.only:
            runs = {name: fn for name, fn in runs.items() if name in args.only.split(",") + ["raw", "ndjson"]}
        times, rows = measure(runs, args.rounds)
        cpu = scan_cpu(ndjson, args.scan_rounds)
        after = load()
        print()
        print("\n".join(table(times, rows, sizes)))
        bronze_rows = {n: r for n, r in rows.items() if n != "raw"}
        if len(set(bronze_rows.values())) != 1 or rows["raw"] != rows["ndjson"]:
            print(f"NOTE: the paths wrote different row counts: {rows}")
        ratio = {n: sizes[n] / statistics.median(times[n]) / (nbytes / statistics.median(times["raw"]))
                 for n in ("ndjson", "ndjson-bare") if n in times}
        if "ndjson-bare" in times:
            print(f"\nndjson / raw = {ratio['ndjson']:.2f}, ndjson-bare / raw = {ratio['ndjson-bare']:.2f} "
                  f"(wall: framings cost NDJSON {1 - ratio['ndjson'] / ratio['ndjson-bare']:+.1%})")
        scan, bare = (statistics.median(cpu[n]) for n in ("scan", "scan-bare"))
        print(f"scan of the NDJSON, CPU s (median of {args.scan_rounds}): with framing {scan:.3f}, bypassed {bare:.3f} "
              f"({(scan - bare) / bare:+.1%}); rounds {' '.join(f'{t:.2f}' for t in cpu['scan'])} / "
              f"{' '.join(f'{t:.2f}' for t in cpu['scan-bare'])}")
        print(f"before: {before}\nafter:  {after}")
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
