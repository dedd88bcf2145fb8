"""`lake demo` and `lake dev`: the bundled demo lake, end to end.

`lake demo` (re)creates the demo lake in `./.lake/demo` (`$LAKE_DEMO_HOME` if set): a copy of the
bundled config whose landing and warehouse are local folders next to it, three days of drifting
telemetry, and a Dagster instance (`dagster_home/`) that records every run. It stays there, so the
`lake` command (with LAKE_CONFIG pointing at it) and `lake dev`'s UI show its tables, checks and
history afterwards. `lake dev --s3` serves fresh demo data from an in-memory local S3 server instead."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from lake_assets.config import DEMO_CONFIG, load_config
from lake_assets.demo.data import land_demo_data
from lake_assets.errors import LakeError
from lake_assets.localstack import LocalS3

DEMO_DAYS = 3
MARK = "# Written by `lake demo`"   # the first line of a demo lake's config: only such a folder is replaced

DAGSTER_YAML = """\
# One run at a time per source pool (bronze assets use pool lake_bronze_<source>); the ledger keeps
# concurrent runs safe anyway, this just avoids them waiting on each other's claims.
concurrency:
  pools:
    default_limit: 1
# Runs log INFO and up (not every DEBUG event) to the console and the run's event log.
python_logs:
  python_log_level: INFO
# The daemon takes queued runs every second, not every 5 s (Dagster's default): a run launched in
# the UI starts sooner (benchmarks/dagster_overhead.py: a tiny partition's run 5.1 -> 3.6 s).
run_queue:
  dequeue_interval_seconds: 1
"""


def demo_days(days: int = DEMO_DAYS) -> list[dt.date]:
    """The demo's landing days: `days` days ending today (UTC)."""
    last = dt.datetime.now(dt.timezone.utc).date()
    return [last - dt.timedelta(days=days - 1 - i) for i in range(days)]


def demo_home() -> Path:
    return Path(os.environ.get("LAKE_DEMO_HOME") or Path.cwd() / ".lake" / "demo").resolve()


def write_dagster_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return home


def create_demo_lake(home: Path, days: int = DEMO_DAYS, records_per_day: int = 200) -> Path:
    """A fresh local demo lake in `home`: its lake.yaml (the bundled demo config with local landing
    and warehouse), the landed demo data and an empty Dagster home. Returns the config path."""
    config = home / "lake.yaml"
    if home.exists() and any(home.iterdir()):
        if not (config.exists() and config.read_text().startswith(MARK)):
            raise LakeError(f"{home} is not empty and holds no demo lake: not replacing it (set LAKE_DEMO_HOME "
                            f"to a new folder)")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    text = DEMO_CONFIG.read_text()
    text = re.sub(r"(?m)^landing: .*$", "landing: landing", text)
    text = re.sub(r"(?m)^warehouse: .*$", "warehouse: warehouse", text)
    config.write_text(f"{MARK} from {DEMO_CONFIG.name}; landing and warehouse are the folders next to this file.\n"
                      f"{text}")
    lake = load_config(config)
    land_demo_data(lake.landing, demo_days(days)[0], days=days, records_per_day=records_per_day)
    write_dagster_home(home / "dagster_home")
    return config


def use_demo_lake(home: Path) -> dict[str, str]:
    """Point this process (and its children) at the demo lake in `home`; the environment set."""
    env = {"LAKE_CONFIG": str(home / "lake.yaml"), "DAGSTER_HOME": str(home / "dagster_home")}
    os.environ.update(env)
    return env


def env_line(env: dict[str, str]) -> str:
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def lake_command() -> str:
    """How to call this `lake` from the current folder: `lake` if that is what PATH finds."""
    here = Path(sys.executable).parent / "lake"
    found = shutil.which("lake")
    if found and Path(found).resolve() == here.resolve():
        return "lake"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)


def start_demo_stack(days: int = DEMO_DAYS, records_per_day: int = 200) -> tuple[LocalS3, list[str], list[str]]:
    """A moto S3 server with the demo buckets and `days` days of telemetry ending today (UTC)."""
    os.environ.pop("LAKE_CONFIG", None)
    s3 = LocalS3().start()
    s3.apply_env()
    lake = load_config(DEMO_CONFIG)
    s3.create_buckets(lake.landing, lake.warehouse)
    dates = demo_days(days)
    written = land_demo_data(lake.landing, dates[0], days=days, records_per_day=records_per_day)
    return s3, written, [day.isoformat() for day in dates]


def run_demo() -> int:
    from dagster import DagsterInstance

    from lake_assets.definitions import build_definitions
    from lake_assets.demo import report

    home = demo_home()
    config = create_demo_lake(home)
    print(f"demo lake: {home} (made anew by each `lake demo`)", flush=True)
    env = use_demo_lake(home)
    lake = load_config(config)
    days = [day.isoformat() for day in demo_days()]
    print(f"landed {DEMO_DAYS} days of telemetry ({days[0]}..{days[-1]}) under {lake.landing}/telemetry/", flush=True)
    job = build_definitions(str(config)).resolve_implicit_global_asset_job_def()
    blocked = []
    with DagsterInstance.get() as instance:
        for day in days:
            result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False,
                                            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}})
            print(f"\n== {day}: run {'succeeded' if result.success else 'stopped by a failed check'}")
            if not result.success:
                blocked.append(day)
            report.print_run(result.all_events)
    report.print_summary(lake, blocked, lake_command(), env_line(env))
    return 0


def run_dev(port: int = 3000, s3: bool = False) -> int:
    """`dagster dev` on the demo lake (or, with `s3`, on fresh demo data in a local S3 server) until
    Ctrl-C or SIGTERM; prints the environment a second shell needs to reach the same lake."""
    server, line = None, ""
    if s3:
        server, _, days = start_demo_stack()
        env = {"DAGSTER_HOME": str(write_dagster_home(demo_home().parent / "dagster_home_s3"))}
        os.environ.update(env)
        env.update(server.env())
        note = f"fresh demo data for {days[0]}..{days[-1]} in a local S3 server at {server.endpoint} (in memory)"
        line = "unset LAKE_CONFIG; "  # the bundled demo config: its lake is in that server
    else:
        home = demo_home()
        if not (home / "lake.yaml").exists():
            create_demo_lake(home)
            note = f"no demo lake yet: landed demo data in {home} (run `lake demo` to see it materialized)"
        else:
            note = f"the demo lake in {home}"
        env = use_demo_lake(home)
    print(f"lake dev: {note}\nThe UI: http://127.0.0.1:{port}\nFor the `lake` command in another shell:\n"
          f"  {line}{env_line(env)}", flush=True)
    try:
        return _run_until_signalled([sys.executable, "-W", "ignore::FutureWarning:click.core", "-m", "dagster",
                                     "dev", "-m", "lake_assets.definitions", "-h", "127.0.0.1", "-p", str(port)])
    finally:
        if server is not None:
            server.stop()


def _child_setup() -> None:
    # Start with default signal handling even when we were started in the background (where SIGINT
    # is ignored and `dagster dev`, which maps SIGTERM onto SIGINT's handler, would ignore both).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from lake_assets.localstack import _die_with_parent

    _die_with_parent()


def _run_until_signalled(cmd: list[str], grace: float = 60.0) -> int:
    """Run `cmd` in its own session; SIGINT or SIGTERM to us stops it with one SIGTERM (dagster dev
    then shuts its webserver and daemon down), killed if it has not stopped `grace` s later."""
    child = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_child_setup)
    stopping: float | None = None

    def stop(signum, frame) -> None:
        nonlocal stopping
        if stopping is None:
            stopping = time.monotonic()
            print(f"lake dev: {signal.Signals(signum).name}, stopping dagster dev", file=sys.stderr, flush=True)
            child.terminate()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = child.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if stopping is not None and time.monotonic() - stopping > grace:
                    child.kill()
        return 0 if stopping is not None else code
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
