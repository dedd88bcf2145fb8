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
    assert re.search(r"check bronze/telemetry:rescued_data_rate\s+ERROR\s+.*15\.3\d* ?%.*device\.fw\.minor", stdout), \
        stdout
    assert "A rescued row of bronze/telemetry_frozen" in stdout and '"battery_pct": ' in stdout
    promote = re.search(r"^\s+(\S+) (promote telemetry_frozen battery_pct)\s+#", stdout, re.M)
    assert promote, stdout

    cli = {**_base_env(), **env}
    status = _lake("status", cwd=folder, env=cli)
    assert status.returncode == 0, status.stderr
    header, *rows = status.stdout.splitlines()
    assert header.split()[:4] == ["source", "files", "committed", "pending"]
    cells = {row.split()[0]: row.split() for row in rows}
    assert cells["telemetry"][1:6] == ["12", "0", "0", "604", "9"] and cells["telemetry"][6] == "5.13%"
    assert cells["telemetry_frozen"][6] == "66.56%" and cells["telemetry_frozen"][7] == "v0"
    assert all(row.index(" v") + 1 == header.index("schema") for row in rows), status.stdout  # aligned
    history = _lake("schema", "history", "telemetry", cwd=folder, env=cli)
    assert history.returncode == 0 and len(history.stdout.splitlines()) == 3, history
    assert "version 2" in history.stdout and "added device.fw.patch bigint" in history.stdout

    # The printed promote command, as printed (its `lake` is this interpreter's).
    promoted = _lake(*promote.group(2).split(), cwd=folder, env=cli)
    assert promoted.returncode == 0, promoted.stderr
    assert "battery_pct is now a bigint column" in promoted.stdout and "402 row(s) moved" in promoted.stdout
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
