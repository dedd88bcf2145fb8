"""The fixed cost of one Dagster run of bronze for a tiny partition, phase by phase, against `lake
ingest` of the same kind of file, in one script.

    .venv/bin/python benchmarks/dagster_overhead.py [--runs 3] [--code DIR ...]

A real Dagster instance (webserver + daemon, the `lake dev` dagster.yaml: the default run
coordinator (queued), run launcher and whatever executor the code location configures) serves a
lake of local folders with one source; each round lands one small file on a new day, launches one
bronze run for that day through GraphQL as the UI's "Materialize" does, waits for it to finish and
splits its wall time by the run's own events:

  queue      launch request -> RUN_DEQUEUED (the daemon's run queue: it polls every 5 s)
  launch     RUN_DEQUEUED -> "Started process for run" (the code server starts the run worker:
             Python, Dagster)
  import     -> RUN_START (the run worker imports the code location and builds the job)
  step_proc  RUN_START -> STEP_START (with the multiprocess executor: a subprocess per step that
             imports the code location again)
  engine     STEP_START -> "engine ready" (the step's Spark session: the embedded Sail server)
  ingest     -> "ingested"
  checks     -> the last ASSET_CHECK_EVALUATION (the audit and its results)
  run_end    -> the run seen finished by the instance (step end, step process exit, RUN_SUCCESS)

Then the same number of rounds of `lake ingest` (a fresh process each, as a cron job would run it)
of one such file each, and the ratio. --code measures other checkouts of lake_assets too (their
phases where their run logs have the marks). Note the machine's load (printed) beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lake_assets.demo.run import DAGSTER_YAML  # noqa: E402  (the instance settings `lake dev` writes)
from lake_assets_tests.dagster_server import dagster_running, graphql  # noqa: E402

START = dt.date(2026, 1, 1)
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
REPOSITORIES = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
PHASES = ["queue", "launch", "import", "step_proc", "engine", "ingest", "checks", "run_end"]


def _lake(folder: Path, rounds: int, engine: str | None = None) -> str:
    """A lake of local folders with one source and `rounds` days of one small file each; `engine`:
    an sc:// URL of a running Spark Connect server (default: the embedded engine of each process)."""
    from lake_assets.demo.data import generate_records, to_ndjson

    for i in range(rounds):
        day = START + dt.timedelta(days=i)
        target = folder / "landing" / "telemetry" / day.strftime("%Y/%m/%d") / "part-000.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(to_ndjson(generate_records(20, day=i + 1, date=day)))
    (folder / "lake.yaml").write_text(
        "landing: landing\nwarehouse: warehouse\nsources:\n"
        f"  telemetry: {{path: telemetry/, start_date: {START.isoformat()}}}\n"
        + (f"engine: {{kind: spark_connect, remote: '{engine}'}}\n" if engine else ""))
    return str(folder / "lake.yaml")


def _events(instance, run_id: str) -> list[tuple[float, str, str]]:
    """(timestamp, event type or '', message) of every event of the run, in order."""
    out = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        out.append((record.timestamp, event.event_type_value if event else "",
                    (event.message if event else None) or record.user_message or ""))
    return out


def _phases(requested: float, finished: float, events: list[tuple[float, str, str]]) -> dict[str, float]:
    """Seconds per phase (see the module docstring); a phase whose mark is missing is merged into the next."""
    def first(pred):
        return next((t for t, kind, msg in events if pred(kind, msg)), None)

    def last(pred):
        return next((t for t, kind, msg in reversed(events) if pred(kind, msg)), None)

    marks = [("queue", first(lambda k, m: k == "PIPELINE_STARTING")),
             ("launch", first(lambda k, m: m.startswith("Started process for run"))),
             ("import", first(lambda k, m: k == "PIPELINE_START")),
             ("step_proc", first(lambda k, m: k == "STEP_START")),
             ("engine", first(lambda k, m: m.startswith("engine ready"))),
             ("ingest", last(lambda k, m: m.endswith("file(s) done"))),
             ("checks", last(lambda k, m: k == "ASSET_CHECK_EVALUATION")),
             ("run_end", finished)]
    out, before = {}, requested
    for name, t in marks:
        if t is None:
            out[name] = float("nan")
            continue
        out[name] = t - before
        before = t
    out["total"] = finished - requested
    return out


def dagster_rounds(code: Path, work: Path, rounds: int, engine: str | None, dequeue_interval: int | None,
                   timeout: float = 600) -> list[dict]:
    config = _lake(work / "lake", rounds, engine)
    dagster_yaml = DAGSTER_YAML if dequeue_interval is None else \
        DAGSTER_YAML.replace("dequeue_interval_seconds: 1", f"dequeue_interval_seconds: {dequeue_interval}")
    results = []
    # Dagster puts its working directory first on sys.path: start it in `code`.
    with contextlib.chdir(code), \
            dagster_running(config, work / "home", {"PYTHONPATH": str(code)}, dagster_yaml) as (port, env):
        os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
        from dagster import DagsterInstance

        instance = DagsterInstance.get()
        repo = graphql(port, REPOSITORIES, {})["repositoriesOrError"]["nodes"][0]
        for i in range(rounds):
            day = (START + dt.timedelta(days=i)).isoformat()
            params = {"selector": {"repositoryLocationName": repo["location"]["name"],
                                   "repositoryName": repo["name"], "pipelineName": "__ASSET_JOB",
                                   "assetSelection": [{"path": ["bronze", "telemetry"]}]},
                      "mode": "default",
                      "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day}]}}
            requested = time.time()
            launched = graphql(port, LAUNCH_RUN, {"params": params})["launchPipelineExecution"]
            if launched["__typename"] != "LaunchRunSuccess":
                raise RuntimeError(f"launch failed: {launched}")
            run_id = launched["run"]["runId"]
            deadline = time.monotonic() + timeout
            while True:
                run = instance.get_run_by_id(run_id)
                if run.is_finished:
                    finished = time.time()
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run {run_id} not finished after {timeout:.0f} s")
                time.sleep(0.1)
            events = _events(instance, run_id)
            phases = _phases(requested, finished, events)
            phases["status"] = run.status.value
            if os.environ.get("OVERHEAD_EVENTS"):
                for t, kind, msg in events:
                    print(f"    {t - requested:7.2f} {kind:<28} {msg[:110]}")
            results.append(phases)
            print(f"  dagster {day}: {_fmt(phases)}  ({run.status.value})  load {_load()}", flush=True)
    return results


def ingest_rounds(code: Path, work: Path, rounds: int, engine: str | None) -> list[float]:
    config = _lake(work / "lake", rounds, engine)
    env = {**os.environ, "PYTHONPATH": str(code)}
    lake = str(Path(sys.executable).with_name("lake"))
    out = []
    for i in range(rounds):
        day = (START + dt.timedelta(days=i)).isoformat()
        t0 = time.monotonic()
        done = subprocess.run([lake, "--config", config, "ingest", "telemetry", "--date", day], env=env, cwd=code,
                              capture_output=True, text=True)
        out.append(time.monotonic() - t0)
        if done.returncode:
            raise RuntimeError(f"lake ingest failed: {done.stderr[-2000:]}")
        print(f"  lake ingest {day}: {out[-1]:.2f} s  load {_load()}", flush=True)
    return out


@contextlib.contextmanager
def sail_server(code: Path):
    """The sc:// URL of a Sail server (`sail spark server`) running for the whole measurement, with
    `code` importable by its Python data sources."""
    from lake_assets_tests.dagster_server import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(code), "RUST_LOG": "warn"}
    server = subprocess.Popen([str(Path(sys.executable).with_name("sail")), "spark", "server", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the Sail server did not start") from None
                time.sleep(0.2)
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _fmt(phases: dict) -> str:
    return " ".join(f"{name} {phases[name]:.2f}" for name in PHASES + ["total"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="rounds (runs, and `lake ingest`s) per checkout")
    parser.add_argument("--code", action="append", default=[], help="a checkout to measure (default: this one)")
    parser.add_argument("--engine", choices=["embedded", "remote"], action="append", default=[],
                        help="embedded (default): Sail in each run's process; remote: one Sail server for all "
                             "runs and ingests (repeatable)")
    parser.add_argument("--dequeue-interval", type=int, help="the instance's run_queue dequeue_interval_seconds "
                                                                 "(default: lake dev's, 1 s; Dagster's own is 5 s)")
    args = parser.parse_args()
    table = {}
    for code in [Path(c).resolve() for c in args.code] or [ROOT]:
        for engine in args.engine or ["embedded"]:
            print(code, engine, flush=True)
            with tempfile.TemporaryDirectory() as tmp, \
                    (sail_server(code) if engine == "remote" else contextlib.nullcontext()) as url:
                runs = dagster_rounds(code, Path(tmp) / "dagster", args.runs, url, args.dequeue_interval)
                ingests = ingest_rounds(code, Path(tmp) / "cli", args.runs, url)
            medians = {name: statistics.median(r[name] for r in runs) for name in PHASES + ["total"]}
            table[f"{code.name} {engine}"] = (medians, statistics.median(ingests))
    print(f"\nmedians of {args.runs}; load now {_load()}")
    print(f"{'checkout':<30} " + " ".join(f"{n:>9}" for n in PHASES) + f" {'run':>7} {'ingest':>7} {'ratio':>6}")
    for code, (phases, ingest) in table.items():
        print(f"{code[-30:]:<30} " + " ".join(f"{phases[n]:>9.2f}" for n in PHASES)
              + f" {phases['total']:>7.2f} {ingest:>7.2f} {phases['total'] / ingest:>5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
