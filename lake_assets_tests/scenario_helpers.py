"""The shared test lake: one builder for every test that needs a lake, and the helpers around it
(the fixtures are in conftest.py).

A `Lake` is a throw-away lake under a pytest tmp dir: a config YAML (one source, optionally silver
and gold tables), a landing (a local folder, or an s3:// bucket of the session's moto server) and a
warehouse (a local folder, or an s3:// URI). Files land with `land`. Ingestion runs either as the
real `lake` CLI in a subprocess (`run`, `ingest`: LAKE_CRASH_AT / SIGKILL kill a real process, with
its own embedded Sail server) or in this process on a given Spark session (`ingest_with`); Dagster
runs through `materialize`. Tables are read back with a second reader, delta-rs (`to_pandas`; never
to_pyarrow_table, which aborts the process at exit), or with Spark (`rows`). The expected contents
of bronze and quarantine are computed from the landing files themselves, so the exactly-once check
is "each (file, line) exactly once, with the right values" (`assert_exactly_once`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

LAKE = str(Path(sys.executable).with_name("lake"))
SOURCE = "telemetry"
DAY1, DAY2, DAY3 = "2026-01-01", "2026-01-02", "2026-01-03"

# A silver upsert table over the source `ev` (test_silver, test_databricks).
UPSERT = """\
  events:
    from: ev
    select: [id, seq, "payload.v AS v"]
    keys: [id]
    sequence_by: seq
    mode: upsert
"""


def write_config(path, landing: str, warehouse: str, sources: str, extra: str = "") -> str:
    """Write a lake YAML with the given `sources:` body (indented YAML) and return its path."""
    text = f"landing: {landing}\nwarehouse: {warehouse}\nsources:\n" + textwrap.indent(textwrap.dedent(sources), "  ")
    Path(path).write_text(text + textwrap.dedent(extra))
    try:  # in-process users of load_config must see the new text
        from lake_assets.config import _load_cached
        _load_cached.cache_clear()
    except ImportError:
        pass
    return str(path)


def ndjson(records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def read_delta(uri: str):
    """A Delta table as a pandas frame, read by delta-rs (local or S3)."""
    from deltalake import DeltaTable

    from lake_assets.core.delta_meta import storage_options

    return DeltaTable(uri, storage_options=storage_options(uri)).to_pandas()


def table_rows(spark, uri: str, columns: list[str], order: list[str] | None = None) -> list[tuple]:
    """The table's `columns` read by Spark, as tuples sorted by `order` (default: the columns)."""
    from lake_assets.core import tables

    df = tables.read(spark, uri).select(*columns).orderBy(*(order or columns))
    return [tuple(r) for r in df.collect()]


def pandas_rows(uri: str, columns: list[str]) -> list[tuple]:
    """The same read by delta-rs (NaN as None)."""
    df = read_delta(uri)[columns].sort_values(columns)
    return [tuple(None if v != v else v for v in r) for r in df.itertuples(index=False)]


def plain(v):
    """delta-rs/pandas values as plain Python (numpy arrays -> lists, NaN -> None, Timestamps -> UTC naive)."""
    import pandas as pd

    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
        v = v.tolist()
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if v is None or (not isinstance(v, (str, bytes)) and pd.isna(v)):  # NaN, NaT
        return None
    if hasattr(v, "to_pydatetime"):
        v = v.to_pydatetime()
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return v


def materialize(defs, partition: str, instance):
    """Run the Definitions' asset job for one partition: (result, {asset key: its materialization metadata})."""
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(partition_key=partition, instance=instance, raise_on_error=False)
    mats = [e.materialization for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    return result, {m.asset_key.to_user_string(): m.metadata for m in mats}


def _remote(place: str) -> bool:
    return "://" in place


def record(tag: str, line: int, **extra) -> dict:
    """A nested record whose values identify where it came from."""
    return {"event_id": f"{tag}-{line}", "n": line, "device": {"id": f"dev-{tag}", "fw": {"minor": line % 3}},
            **extra}


def lines_for(tag: str, count: int, malformed_at: tuple[int, ...] = (), **extra) -> list:
    """`count` lines: records, except raw garbage at the 1-based positions in malformed_at."""
    return [f"not json {{ {tag} line {i}" if i in malformed_at else record(tag, i, **extra)
            for i in range(1, count + 1)]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])

    def __str__(self) -> str:
        return f"rc={self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-4000:]}"


class Lake:
    """A throw-away lake with one source (see the module docstring)."""

    def __init__(self, root: Path, warehouse: str | None = None, engine=None, *, source: str = SOURCE,
                 landing: str | None = None, silver: str = "", gold: str = "", **source_options):
        """`warehouse` / `landing`: s3:// URIs (default: local folders `wh` / `land` under `root`; both
        kept as strings, as in the parsed config);
        `engine`: an EngineConfig or its dict (default: the embedded engine of each process); `silver` / `gold`:
        the YAML bodies of those sections; `source_options`: the source's keys (JSON values)."""
        self.root = Path(root)
        self.engine = engine
        self.source = source
        self.landing = landing or str((self.root / "land").resolve())
        self.warehouse = warehouse or str((self.root / "wh").resolve())
        self.layers = (f"silver:\n{silver}" if silver else "") + (f"gold:\n{gold}" if gold else "")
        if not _remote(self.landing):
            Path(self.landing).mkdir(parents=True, exist_ok=True)
        self.config = self.root / "lake.yaml"
        self.write_config(**source_options)

    # ------------------------------------------------------------------ setup

    def write_config(self, **source_options) -> None:
        """(Re)write lake.yaml with these source keys (besides path and start_date)."""
        options = {"path": f"{self.source}/", "start_date": DAY1, **source_options}
        body = f"{self.source}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in options.items())
        engine = self.engine if isinstance(self.engine, dict) or not self.engine \
            else self.engine.model_dump(mode="json", exclude_none=True)
        engine = f"engine: {json.dumps(engine)}\n" if engine else ""
        self.root.mkdir(parents=True, exist_ok=True)
        write_config(self.config, self._relative(self.landing), self._relative(self.warehouse), body,
                     engine + self.layers)

    def _relative(self, place: str) -> str:
        """A local folder as written in the config: relative to the config's folder."""
        return place if _remote(place) else os.path.relpath(place, self.root.resolve())

    @property
    def lake_config(self):
        """The parsed config (lake_assets.config.LakeConfig), as `lake --config` reads it."""
        from lake_assets.config import load_config

        return load_config(self.config)

    @property
    def source_config(self):
        return self.lake_config.source(self.source)

    @property
    def layout(self):
        from lake_assets.core.layout import Layout

        return Layout(self.warehouse, self.source)

    @property
    def schemas(self):
        """The source's schema log (its accepted schema versions)."""
        from lake_assets.core.schema_log import SchemaLog

        return SchemaLog(self.layout.schemas)

    @staticmethod
    def day(day: str | int) -> str:
        """A landing day: YYYY-MM-DD, or n for 2026-01-0n."""
        return f"2026-01-{day:02d}" if isinstance(day, int) else day

    def key(self, day: str | int, name: str) -> str:
        """A file's key under the source's folder: <yyyy>/<mm>/<dd>/<name>."""
        return "/".join([*self.day(day).split("-"), name])

    def path(self, day: str | int, name: str) -> Path:
        return Path(self.landing) / self.source / self.key(day, name)

    def uri(self, day: str | int, name: str) -> str:
        return self._uri(self.key(day, name))

    def _uri(self, key: str) -> str:
        """The URI the lake records for <landing>/<source>/<key> (a local file: its resolved path)."""
        if _remote(self.landing):
            return "/".join([self.landing.rstrip("/"), self.source, key])
        return str((Path(self.landing) / self.source / key).resolve())

    def land(self, day: str | int, name: str, lines: list, gz: bool = False) -> str:
        """Write a landing file (dicts become JSON lines, strings are written verbatim); its URI."""
        text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines).encode()
        return self.land_raw(day, name, gzip.compress(text) if gz else text)

    def land_raw(self, day: str | int, name: str, data: bytes) -> str:
        return self.put(self.key(day, name), data)

    def put(self, key: str, data: bytes) -> str:
        """Write `data` at <landing>/<source>/<key> (any key, dated or not); its URI."""
        if _remote(self.landing):
            from lake_assets import storage

            storage.write_bytes(self._uri(key), data)
            return self._uri(key)
        path = Path(self._uri(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.stat().st_mtime_ns if path.exists() else None
        path.write_bytes(data)
        if old is not None and path.stat().st_mtime_ns == old:  # make sure the etag changes
            os.utime(path, ns=(old + 1_000_000, old + 1_000_000))
        return str(path)

    def standard_day(self, day: str = DAY1) -> None:
        """Three files: plain with a malformed line, plain clean, gzip with a malformed line."""
        self.land(day, "a.json", lines_for("a", 5, malformed_at=(3,)))
        self.land(day, "b.json", lines_for("b", 4))
        self.land(day, "c.json.gz", lines_for("c", 3, malformed_at=(2,)), gz=True)

    # ------------------------------------------------------------------ running lake

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def args(self, *args: str) -> list[str]:
        return [LAKE, "--config", str(self.config), *args]

    def run(self, *args: str, timeout: float = 180, **env) -> Run:
        p = subprocess.run(self.args(*args), capture_output=True, text=True, timeout=timeout, env=self.env(**env),
                           cwd=self.root)
        return Run(p.returncode, p.stdout, p.stderr)

    def start(self, *args: str, **env) -> subprocess.Popen:
        return subprocess.Popen(self.args(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(**env), cwd=self.root)

    def ingest(self, *days: str | int, reprocess: bool = False, **env) -> Run:
        """`lake ingest` in a subprocess, over the span of `days` (default DAY1)."""
        days = [self.day(d) for d in days] or [DAY1]
        extra = ["--reprocess"] if reprocess else []
        return self.run("ingest", self.source, "--from", min(days), "--to", max(days), *extra, **env)

    def ingest_ok(self, *days: str, **kw) -> Run:
        r = self.ingest(*days, **kw)
        assert r.returncode == 0, str(r)
        return r

    def ingest_with(self, spark, *days: str | int, reprocess: bool = False, log=None):
        """bronze.ingest in this process on `spark` (its log lines to `log`, default nowhere): its IngestResult."""
        from lake_assets.core import bronze

        return bronze.ingest(spark, self.lake_config, self.source_config, [self.day(d) for d in days],
                             reprocess=reprocess, log=log or (lambda _: None))

    # ------------------------------------------------------------------ expectations from the landing

    def landed_files(self) -> list[Path]:
        root = Path(self.landing) / self.source
        return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def expected(self, exclude: frozenset = frozenset()) -> tuple[dict, dict]:
        """({(uri, line): (event_id, n, device_id)}, {(uri, line): raw}) from every landed file
        (but those in `exclude`)."""
        rows, bad = {}, {}
        for path in self.landed_files():
            if str(path.resolve()) in exclude:
                continue
            data = path.read_bytes()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            for number, raw in enumerate(data.decode().split("\n"), 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    bad[(str(path.resolve()), number)] = raw
                    continue
                rows[(str(path.resolve()), number)] = (rec["event_id"], rec["n"], rec["device"]["id"])
        return rows, bad

    # ------------------------------------------------------------------ reading state (delta-rs)

    # The source's tables: a Path when the warehouse is local, else the URI.
    @property
    def bronze_path(self) -> Path | str:
        return self._place(self.layout.bronze)

    @property
    def quarantine_path(self) -> Path | str:
        return self._place(self.layout.quarantine)

    @property
    def ledger_path(self) -> Path | str:
        return self._place(self.layout.ledger)

    @staticmethod
    def _place(uri: str) -> Path | str:
        return uri if _remote(uri) else Path(uri)

    @staticmethod
    def table(path: Path | str):
        """The Delta table at `path` (delta-rs), or None if there is none."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from lake_assets.core.delta_meta import storage_options

        if not _remote(str(path)) and not Path(path, "_delta_log").exists():
            return None
        try:
            return DeltaTable(str(path), storage_options=storage_options(str(path)))
        except TableNotFoundError:
            return None

    def frame(self, path: Path | str):
        import pandas as pd

        t = self.table(path)
        return t.to_pandas() if t is not None else pd.DataFrame()

    def version(self, path: Path | str | None = None) -> int | None:
        """The table's latest version (default: bronze)."""
        t = self.table(path or self.bronze_path)
        return t.version() if t is not None else None

    def versions(self) -> tuple:
        return tuple(self.version(p) for p in (self.bronze_path, self.quarantine_path, self.ledger_path))

    def rows(self, spark, table: str = "bronze", columns=None) -> list[dict]:
        """A table of the source (a Layout attribute: bronze, quarantine, ...) read by Spark, in
        (_source_file, _line) order."""
        df = spark.read.format("delta").load(getattr(self.layout, table))
        if columns:
            df = df.select(*columns)
        return [r.asDict(recursive=True) for r in df.orderBy("_source_file", "_line").collect()]

    def delta_rows(self, table: str = "bronze", columns=None) -> list[dict]:
        """The same read by delta-rs, values as plain Python."""
        frame = self.frame(getattr(self.layout, table)).sort_values(["_source_file", "_line"])
        return [{c: plain(r[c]) for c in (columns or frame.columns)} for r in frame.to_dict("records")]

    def schema(self, spark):
        return spark.read.format("delta").load(self.layout.bronze).schema

    def bronze_rows(self) -> list[tuple]:
        """[(uri, line, event_id, n, device_id, batch_id)], one per bronze row (duplicates kept)."""
        df = self.frame(self.bronze_path)
        if df.empty:
            return []
        return [(r["_source_file"], int(r["_line"]), r["event_id"], int(r["n"]),
                 (r["device"] or {}).get("id"), r["_batch_id"]) for r in df.to_dict("records")]

    def quarantine_rows(self) -> list[tuple]:
        df = self.frame(self.quarantine_path)
        if df.empty:
            return []
        return [(r["_source_file"], int(r["_line"]), r["_raw"], r["_batch_id"]) for r in df.to_dict("records")]

    def ledger(self) -> list[dict]:
        df = self.frame(self.ledger_path)
        return [] if df.empty else df.to_dict("records")

    # ------------------------------------------------------------------ the invariant

    def assert_exactly_once(self, context: str = "", failed: dict[str, str] | None = None) -> None:
        """Bronze holds each landed (file, line) exactly once with the right values, quarantine each
        malformed line once, the ledger says committed (with the right counts) for every landed file
        and knows no other file. `failed` = {uri: text of the reason}: files the ledger must hold as
        failed with that reason, and of which no row may be in the tables."""
        failed = failed or {}
        rows, bad = self.expected(exclude=frozenset(failed))
        got = self.bronze_rows()
        keys = [(u, n) for u, n, *_ in got]
        dups = sorted({k for k in keys if keys.count(k) > 1})
        assert not dups, f"{context}: duplicate bronze rows for {dups[:5]}"
        assert {(u, n): (e, v, d) for u, n, e, v, d, _ in got} == rows, f"{context}: bronze rows differ"
        qgot = self.quarantine_rows()
        qkeys = [(u, n) for u, n, *_ in qgot]
        assert len(qkeys) == len(set(qkeys)), f"{context}: duplicate quarantine rows {sorted(qkeys)}"
        assert {(u, n): raw for u, n, raw, _ in qgot} == bad, f"{context}: quarantine rows differ"
        ledger = self.ledger()
        uris = [e["uri"] for e in ledger]
        assert len(uris) == len(set(uris)), f"{context}: duplicate ledger rows {sorted(uris)}"
        by_uri = {e["uri"]: e for e in ledger}
        assert set(by_uri) == {str(p.resolve()) for p in self.landed_files()} | set(failed), \
            f"{context}: ledger files differ"
        for uri, reason in failed.items():
            e = by_uri[uri]
            assert e["status"] == "failed", f"{context}: {uri} is {e['status']}, expected failed"
            assert reason in (e["error"] or ""), f"{context}: {uri} failed with {e['error']!r}, expected {reason!r}"
        batch_of = {(u, n): b for u, n, _, _, _, b in got}
        for uri, e in by_uri.items():
            if uri in failed:
                continue
            assert e["status"] == "committed", f"{context}: {uri} is {e['status']} ({e['error']})"
            n_rows = sum(1 for (u, _) in rows if u == uri)
            n_bad = sum(1 for (u, _) in bad if u == uri)
            assert e["records"] == n_rows, f"{context}: ledger records of {uri}: {e['records']} != {n_rows}"
            assert e["malformed"] == n_bad, f"{context}: ledger malformed of {uri}: {e['malformed']} != {n_bad}"
            assert {b for (u, _), b in batch_of.items() if u == uri} <= {e["batch_id"]}, \
                f"{context}: rows of {uri} are not all of the committed batch {e['batch_id']}"

    def assert_valid(self) -> None:
        r = self.run("validate", self.source)
        assert r.returncode == 0, str(r)


def kill_after(proc: subprocess.Popen, delay: float) -> int:
    """SIGKILL `proc` after `delay` seconds unless it finished; return its return code."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def assert_exactly_once(lake: "Lake", rows: dict, bad: dict, context: str) -> None:
    """Each landed record is in bronze (or quarantine) exactly once and every file is committed in the ledger."""
    got = lake.bronze_rows()
    keys = [(u, n) for u, n, *_ in got]
    assert len(keys) == len(set(keys)), f"{context}: duplicate bronze rows"
    assert {(u, n): (e, v, d) for u, n, e, v, d, _ in got} == rows, f"{context}: bronze rows differ"
    assert {(u, n): raw for u, n, raw, _ in lake.quarantine_rows()} == bad, f"{context}: quarantine differs"
    ledger = {e["uri"]: e for e in lake.ledger()}
    assert set(ledger) == {u for u, _ in rows} | {u for u, _ in bad}, f"{context}: ledger files differ"
    assert all(e["status"] == "committed" for e in ledger.values()), f"{context}: {ledger}"
