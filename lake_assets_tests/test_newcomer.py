"""A newcomer's first hour, as subprocesses: `lake demo` leaves its lake in the project folder, the
`lake` command (with the printed environment line) and `lake dev`'s UI show it afterwards, the
printed promote command works when copied, and `lake dev` stops cleanly on SIGTERM and SIGINT,
also when started in the background (SIGINT ignored)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lake_assets_tests.dagster_server import free_port, graphql, wait_http

LATEST = """
query Latest {
  assetNodes { assetKey { path } assetMaterializations(limit: 1) { partition runId } }
}"""


def _env_from(line: str) -> dict[str, str]:
    """The variables of a printed `export A=1 B=2` line."""
    assert line.startswith("export "), line
    return dict(word.split("=", 1) for word in shlex.split(line.removeprefix("export ")))


def _lake(*args: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lake_assets.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LAKE_CONFIG", "DAGSTER_HOME", "LAKE_DEMO_HOME")}
    return {**env, "PYTHONPATH": str(Path(__file__).parent.parent)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`lake demo` run once in a fresh project folder: (folder, stdout, the env line's variables)."""
    folder = tmp_path_factory.mktemp("project")
    out = _lake("demo", cwd=folder, env=_base_env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    line = next(ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("export LAKE_CONFIG="))
    return folder, out.stdout, _env_from(line)


@pytest.mark.slow
def test_demo_lake_stays_and_the_cli_reads_it(demo):
    folder, stdout, env = demo
    home = folder / ".lake" / "demo"
    assert env == {"LAKE_CONFIG": str(home / "lake.yaml"), "DAGSTER_HOME": str(home / "dagster_home")}
    # What the demo says it did, readable: drift fields, percentages, a rescued row, the promote hint.
    assert re.search(r"check bronze/telemetry:schema_drift\s+WARN\s+.*added.*battery_pct", stdout), stdout
    # The demo's days end today and its random data is seeded by date: figures come from its own lines.
    days = re.findall(r"^\s+bronze/(telemetry|telemetry_frozen)\s+\d+ files, (\d+) rows, \d+ malformed, (\d+) rescued",
                      stdout, re.M)
    assert len(days) == 6, stdout
    (rows3, rescued3), = [(int(n), int(r)) for src, n, r in days[4:] if src == "telemetry"]
    share = round(100 * rescued3 / rows3, 1)
    level = "ERROR" if share > 10 else "WARN"
    assert re.search(rf"check bronze/telemetry:rescued_data_rate\s+{level}\s+{level}: {share} % rows rescued .*"
                     rf"type conflicts: device\.fw\.minor {rescued3}\b", stdout), stdout
    totals = {src: (sum(int(n) for s, n, _ in days if s == src), sum(int(r) for s, _, r in days if s == src))
              for src in ("telemetry", "telemetry_frozen")}
    assert "A rescued row of bronze/telemetry_frozen" in stdout and '"battery_pct": ' in stdout
    promote = re.search(r"^\s+(\S+) (promote telemetry_frozen battery_pct)\s+#", stdout, re.M)
    assert promote, stdout

    cli = {**_base_env(), **env}
    status = _lake("status", cwd=folder, env=cli)
    assert status.returncode == 0, status.stderr
    header, *rows = status.stdout.splitlines()
    assert header.split()[:4] == ["source", "files", "committed", "pending"]
    cells = {row.split()[0]: row.split() for row in rows}
    rate = {src: f"{100 * rescued / rows:.2f}%" for src, (rows, rescued) in totals.items()}
    assert cells["telemetry"][1:6] == ["12", "0", "0", str(totals["telemetry"][0]), "9"]
    assert cells["telemetry"][6] == rate["telemetry"]
    assert cells["telemetry_frozen"][6] == rate["telemetry_frozen"] and cells["telemetry_frozen"][7] == "v0"
    assert all(row.index(" v") + 1 == header.index("schema") for row in rows), status.stdout  # aligned
    history = _lake("schema", "history", "telemetry", cwd=folder, env=cli)
    assert history.returncode == 0 and len(history.stdout.splitlines()) == 3, history
    assert "version 2" in history.stdout and "added device.fw.patch bigint" in history.stdout

    # The printed promote command, as printed (its `lake` is this interpreter's).
    promoted = _lake(*promote.group(2).split(), cwd=folder, env=cli)
    assert promoted.returncode == 0, promoted.stderr
    moved = re.search(r"\b(\d+) row\(s\) moved", promoted.stdout)
    assert "battery_pct is now a bigint column" in promoted.stdout and moved, promoted.stdout
    assert 0 < int(moved[1]) <= sum(int(n) for src, n, _ in days[2:] if src == "telemetry_frozen")
    after = json.loads(_lake("status", "telemetry_frozen", "--json", cwd=folder, env=cli).stdout)
    assert after["schema_version"] == 1


def _start_dev(folder: Path, port: int, background: bool) -> subprocess.Popen:
    def ignore_sigint() -> None:  # what a shell does to `lake dev &`
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, "-m", "lake_assets.cli", "dev", "--port", str(port)], cwd=folder,
                            env=_base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=ignore_sigint if background else None)


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.split()
    children: dict[int, list[int]] = {}
    for child, parent in zip(out[::2], out[1::2]):
        children.setdefault(int(parent), []).append(int(child))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.add(pid)
        except ProcessLookupError:
            pass
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("signum, background", [(signal.SIGTERM, True), (signal.SIGINT, False)],
                         ids=["SIGTERM-background", "SIGINT"])
def test_lake_dev_shows_the_demo_and_stops_cleanly(demo, signum, background):
    folder = demo[0]
    port = free_port()
    dev = _start_dev(folder, port, background)
    try:
        wait_http(port, time.monotonic() + 180)
        nodes = {"/".join(n["assetKey"]["path"]): n["assetMaterializations"] for n in graphql(port, LATEST, {})["assetNodes"]}
        assert nodes["bronze/telemetry"] and nodes["bronze/telemetry"][0]["partition"], nodes
        assert nodes["gold/daily_device_stats"], nodes      # materialized by the demo, seen by the UI
        children = _descendants(dev.pid)
        assert children, "dagster dev did not start"
        dev.send_signal(signum)
        output, _ = dev.communicate(timeout=90)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.communicate()
    assert dev.returncode == 0, output[-3000:]
    assert f"export LAKE_CONFIG={folder / '.lake' / 'demo' / 'lake.yaml'}" in output
    assert "SupersessionWarning" not in output, output[-3000:]
    deadline = time.monotonic() + 30
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(children), f"left running: {_alive(children)}\n{output[-3000:]}"


@pytest.mark.slow
def test_lake_dev_s3_prints_the_line_a_second_shell_needs(tmp_path):
    port = free_port()
    dev = subprocess.Popen([sys.executable, "-m", "lake_assets.cli", "dev", "--s3", "--port", str(port)], cwd=tmp_path,
                           env=_base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not (lines and "export " in lines[-1]):
            lines.append(dev.stdout.readline())
            assert lines[-1], "".join(lines)
        line = lines[-1].strip()
        assert line.startswith("unset LAKE_CONFIG; export "), line
        env = _env_from(line.removeprefix("unset LAKE_CONFIG; "))
        assert {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                "AWS_ALLOW_HTTP"} <= set(env), env
        second_shell = {k: v for k, v in _base_env().items() if not k.startswith("AWS_")}
        status = _lake("status", "telemetry", "--json", cwd=tmp_path, env={**second_shell, **env})
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["files"]["pending"] == 12      # the demo's files, in that server
        wait_http(port, time.monotonic() + 180)
        children = _descendants(dev.pid)
        dev.send_signal(signal.SIGTERM)
        dev.communicate(timeout=90)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.communicate()
    assert dev.returncode == 0
    deadline = time.monotonic() + 30
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(children), _alive(children)     # dagster dev and the S3 server
