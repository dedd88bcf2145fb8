"""Shared scaffolding for the exactly-once and operator-tool scenario tests.

A `Lake` is a throw-away local lake under a pytest tmp dir: a config YAML, a landing folder and a
warehouse. `lake` commands run as real subprocesses (so LAKE_CRASH_AT / SIGKILL kill a real
process, with its own embedded Sail server). The expected contents of bronze and quarantine are
computed from the landing files themselves, so every check is "each (file, line) exactly once,
with the right values", read back with a second reader (delta-rs `to_pandas`; never
to_pyarrow_table, which aborts the process at exit).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

LAKE = str(Path(sys.executable).with_name("lake"))
SOURCE = "telemetry"
DAY1, DAY2 = "2026-01-01", "2026-01-02"


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
    def __init__(self, root: Path, warehouse: str | None = None, engine=None, **source_options):
        """`warehouse`: an s3:// URI for the tables (default: a local folder under `root`)."""
        self.root = Path(root)
        self.engine = engine  # an EngineConfig; None: the embedded engine of each `lake` process
        self.landing = self.root / "land"
        self.warehouse = warehouse or self.root / "wh"
        self.landing.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "lake.yaml"
        self.write_config(**source_options)

    # ------------------------------------------------------------------ setup

    def write_config(self, **source_options) -> None:
        options = {"path": f"{SOURCE}/", "start_date": DAY1, **source_options}
        body = "".join(f"    {k}: {v}\n" for k, v in options.items())
        warehouse = self.warehouse if isinstance(self.warehouse, str) else "wh"
        engine = f"engine: {self.engine.model_dump_json(exclude_none=True)}\n" if self.engine else ""
        self.config.write_text(f"landing: land\nwarehouse: {warehouse}\n{engine}sources:\n  {SOURCE}:\n{body}")
        try:  # in-process users of load_config must see the new text
            from lake_assets.config import _load_cached
            _load_cached.cache_clear()
        except ImportError:
            pass

    def path(self, day: str, name: str) -> Path:
        y, m, d = day.split("-")
        return self.landing / SOURCE / y / m / d / name

    def uri(self, day: str, name: str) -> str:
        return str(self.path(day, name).resolve())

    def land(self, day: str, name: str, lines: list, gz: bool = False) -> str:
        """Write a landing file (dicts become JSON lines, strings are written verbatim)."""
        text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines).encode()
        path = self.path(day, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.stat().st_mtime_ns if path.exists() else None
        path.write_bytes(gzip.compress(text) if gz else text)
        if old is not None and path.stat().st_mtime_ns == old:  # make sure the etag changes
            os.utime(path, ns=(old + 1_000_000, old + 1_000_000))
        return str(path.resolve())

    def land_raw(self, day: str, name: str, data: bytes) -> str:
        path = self.path(day, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path.resolve())

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

    def ingest(self, *days: str, reprocess: bool = False, **env) -> Run:
        days = days or (DAY1,)
        extra = ["--reprocess"] if reprocess else []
        return self.run("ingest", SOURCE, "--from", min(days), "--to", max(days), *extra, **env)

    def ingest_ok(self, *days: str, **kw) -> Run:
        r = self.ingest(*days, **kw)
        assert r.returncode == 0, str(r)
        return r

    # ------------------------------------------------------------------ expectations from the landing

    def landed_files(self) -> list[Path]:
        root = self.landing / SOURCE
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

    def _under_warehouse(self, *parts: str) -> Path | str:
        if isinstance(self.warehouse, str):
            return "/".join([self.warehouse.rstrip("/"), *parts])
        return self.warehouse.joinpath(*parts)

    @property
    def bronze_path(self) -> Path | str:
        return self._under_warehouse("bronze", SOURCE)

    @property
    def quarantine_path(self) -> Path | str:
        return self._under_warehouse("bronze", f"{SOURCE}__quarantine")

    @property
    def ledger_path(self) -> Path | str:
        return self._under_warehouse("_state", SOURCE, "ledger")

    @staticmethod
    def table(path: Path | str):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        from lake_assets.core.delta_meta import storage_options

        if isinstance(path, Path) and not (path / "_delta_log").exists():
            return None
        try:
            return DeltaTable(str(path), storage_options=storage_options(str(path)))
        except TableNotFoundError:
            return None

    def frame(self, path: Path):
        import pandas as pd

        t = self.table(path)
        return t.to_pandas() if t is not None else pd.DataFrame()

    def version(self, path: Path) -> int | None:
        t = self.table(path)
        return t.version() if t is not None else None

    def versions(self) -> tuple:
        return tuple(self.version(p) for p in (self.bronze_path, self.quarantine_path, self.ledger_path))

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
        r = self.run("validate", SOURCE)
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
