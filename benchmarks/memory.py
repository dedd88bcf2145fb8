"""Peak memory of one day's `lake ingest` against its input size (issue 15: flat in input size).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory.py --sizes 0.5,1,2,4
    PYTHONPATH=$PWD .venv/bin/python benchmarks/memory.py --quick          # smoke: < 1 min

For each size (GB of NDJSON) it writes one landing day of nested telemetry records
(lake_assets.demo.data, the day-2 shape: nested structs, arrays of structs; clean, so the engine's
own reader takes it too; `--drift`: the day-3 shape, with type conflicts to rescue) in --file-mb files under a local folder, then runs, each in a fresh
process (so the RSS is the real one, not what this script already holds):

  lake    `python -m lake_assets.cli ingest` of that day into a fresh local warehouse, with the
          defaults (max_bytes_per_batch, the parse cache) unless --config-extra says otherwise
  raw     Sail `spark.read.json(folder)` -> Delta append (the baseline: the engine alone)

The peak RSS is the larger of the child's own peak (wait4's ru_maxrss, exact) and the sum of the
RSS of its whole process tree sampled every 0.1 s (the embedded Sail server runs inside the
process as threads; a helper process would be counted here). MB/s is input bytes over the wall
time of the child, start-up included. The data is deleted after each size.
`--code NAME=CHECKOUT` (repeatable) runs `lake` from other checkouts too, for before -> after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1000 * 1000
GIB = 1024 ** 3
DAY = dt.date(2026, 11, 18)
RAW = """
import sys
from lake_assets.engine import spark_session
spark = spark_session()
spark.read.json(sys.argv[1]).write.format("delta").mode("append").save(sys.argv[2])
"""


def generate(folder: Path, total_mb: float, file_mb: float, drift: bool = False) -> int:
    """About total_mb MB of NDJSON in files of file_mb MB; returns the bytes written. A pool of
    distinct records is generated once and cycled through (record generation is the slow part).
    `drift`: the day-3 shape (a new nested field; 1 in 8 `device.fw.minor` a string: type conflicts)."""
    from lake_assets.demo.data import generate_records, to_ndjson

    folder.mkdir(parents=True, exist_ok=True)
    shape = 3 if drift else 2
    pool = [to_ndjson(generate_records(2000, seed=11, day=shape, date=DAY, start=i * 2000)) for i in range(16)]
    target, per_file = int(total_mb * MB), max(1, int(file_mb * MB))
    written, n, block = 0, 0, 0
    while written < target:
        size = 0
        with open(folder / f"part-{n:05d}.json", "wb") as fh:
            while size < min(per_file, target - written):
                size += fh.write(pool[block % len(pool)])
                block += 1
        written += size
        n += 1
    return written


class Peak:
    """The peak RSS of a child process and its descendants (see the module docstring)."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self.done = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        while not self.done.wait(0.1):
            try:
                tree = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass

    def stop(self, maxrss_kib: int) -> int:
        self.done.set()
        self.thread.join()
        return max(self.peak, maxrss_kib * 1024)


def run(argv: list[str], env: dict, log: Path) -> tuple[int, float]:
    """Run a child to completion; (peak RSS bytes, wall seconds). Exits on failure, showing its log."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = Peak(child.pid)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    rss = peak.stop(usage.ru_maxrss)
    if child.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed ({child.returncode}):\n{log.read_text()[-3000:]}")
    return rss, time.perf_counter() - start


def lake_config(root: Path, warehouse: Path, extra: str) -> Path:
    path = root / f"{warehouse.name}.yaml"
    path.write_text(f"landing: {root / 'landing'}\nwarehouse: {warehouse}\nsources:\n  events:\n"
                    f"    path: events/\n    start_date: 2026-01-01\n{extra}")
    return path


def measure(size_gb: float, args, codes: dict[str, str], root: Path) -> dict[str, tuple[int, float]]:
    folder = root / "landing" / "events" / f"{DAY:%Y/%m/%d}"
    t0 = time.perf_counter()
    nbytes = generate(folder, size_gb * 1000, args.file_mb, args.drift)
    files = len(list(folder.iterdir()))
    print(f"{size_gb:g} GB: {nbytes / MB:.0f} MB in {files} file(s), written in {time.perf_counter() - t0:.0f} s",
          flush=True)
    out: dict[str, tuple[int, float]] = {}
    extra = "".join(f"    {line}\n" for line in args.config_extra)
    for name, checkout in codes.items():
        env = {**os.environ, "PYTHONPATH": checkout}
        config = lake_config(root, root / f"warehouse-{name}", extra)
        rss, secs = run([sys.executable, "-m", "lake_assets.cli", "--config", str(config), "ingest", "events",
                         "--date", DAY.isoformat()], env, root / f"{name}.log")
        out[name] = (rss, nbytes / MB / secs)
        print(f"  {name:>8}: peak {rss / GIB:.2f} GiB, {out[name][1]:.1f} MB/s", flush=True)
    if not (args.no_raw or args.drift):   # the engine's reader fails on a type conflict
        rss, secs = run([sys.executable, "-c", RAW, str(folder), str(root / "raw-delta")],
                        {**os.environ, "PYTHONPATH": next(iter(codes.values()))}, root / "raw.log")
        out["raw"] = (rss, nbytes / MB / secs)
        print(f"  {'raw':>8}: peak {rss / GIB:.2f} GiB, {out['raw'][1]:.1f} MB/s", flush=True)
    for path in root.iterdir():   # the next size starts from nothing
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.5,1,2,4", help="GB of NDJSON per day, comma-separated")
    parser.add_argument("--file-mb", type=float, default=64, help="size of each landing file (MB)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.02 and 0.05 GB in 5 MB files")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw engine baseline")
    parser.add_argument("--drift", action="store_true",
                        help="records with type conflicts (the rescue path; no raw baseline: it fails on them)")
    parser.add_argument("--code", action="append", default=[],
                        help="NAME=CHECKOUT whose lake_assets runs the ingest (repeatable; default this checkout)")
    parser.add_argument("--config-extra", action="append", default=[],
                        help="a source config line, e.g. 'max_bytes_per_batch: 1073741824' (repeatable)")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="where the data is written (and deleted)")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.file_mb = "0.02,0.05", 5
    sizes = [float(s) for s in args.sizes.split(",")]
    codes = dict(c.split("=", 1) for c in args.code) or {"this": str(Path(__file__).resolve().parents[1])}
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="lake-memory-", dir=args.tmp) as tmp:
        for size in sizes:
            results[size] = measure(size, args, codes, Path(tmp))
    names = list(results[sizes[0]])
    header = f"{'GB':>5}  " + "  ".join(f"{n + ' peak':>12}  {n + ' MB/s':>10}" for n in names)
    print("\n" + header)
    for size, row in results.items():
        print(f"{size:>5g}  " + "  ".join(f"{row[n][0] / GIB:8.2f} GiB  {row[n][1]:10.1f}" for n in names))
    print(json.dumps({str(s): {n: {"peak_gib": round(r[0] / GIB, 3), "mb_s": round(r[1], 1)} for n, r in row.items()}
                      for s, row in results.items()}))


if __name__ == "__main__":
    main()
