"""A fake Databricks workspace on 127.0.0.1: the Jobs (runs submit / get / cancel) and Files
(Volumes) REST endpoints the Databricks SDK calls for `engine: databricks`, enough for the real
`WorkspaceClient` and the real dagster-databricks Pipes clients.

A submitted task runs for real: the wheel's `lake-remote` entry point as `python -m
lake_assets.remote` in a subprocess, with the task's parameters and its cluster's environment,
and SPARK_REMOTE pointing at a Spark Connect server standing in for the cluster's Spark. The
Volume is a local folder: a job sees the same absolute paths as the Files API (as a Databricks
job sees /Volumes). Any other entry point does nothing and succeeds, as a wheel whose entry point
never opens Pipes would.

What it cannot prove: Unity Catalog privileges, serverless environment installs, cluster library
installs, sandboxed compute, run-state timings of a real workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

ENTRY_POINTS = {("lake_assets", "lake-remote"): "lake_assets.remote"}


@dataclass
class FakeRun:
    run_id: int
    task: dict
    submit: dict
    proc: subprocess.Popen | None = None
    canceled: bool = False
    log: list[str] = field(default_factory=list)

    def state(self) -> dict:
        if self.canceled:
            return {"life_cycle_state": "TERMINATED", "result_state": "CANCELED", "state_message": "canceled"}
        code = self.proc.poll() if self.proc else 0
        if code is None:
            return {"life_cycle_state": "RUNNING", "state_message": ""}
        if code == 0:
            return {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
        return {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
                "state_message": f"python exited with {code}: {''.join(self.log)[-2000:]}"}


class FakeDatabricks:
    def __init__(self, volume: Path, spark_remote: str) -> None:
        self.volume = Path(volume).resolve()
        self.spark_remote = spark_remote
        self.runs: dict[int, FakeRun] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeDatabricks:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        for run in self.runs.values():
            if run.proc and run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()

    def client(self):
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient(host=self.host, token="fake-token")

    # ------------------------------------------------------------------ jobs

    def submit(self, body: dict) -> int:
        (task,) = body["tasks"]
        with self._lock:
            run = FakeRun(len(self.runs) + 1, task, body)
            self.runs[run.run_id] = run
        wheel = task.get("python_wheel_task") or {}
        module = ENTRY_POINTS.get((wheel.get("package_name"), wheel.get("entry_point")))
        env = {**os.environ, **(task.get("new_cluster") or {}).get("spark_env_vars", {}),
               "SPARK_REMOTE": self.spark_remote}
        env.pop("SPARK_CONNECT_MODE_ENABLED", None)
        args = [sys.executable, "-m", module, *wheel.get("parameters", [])] if module else [sys.executable, "-c", "pass"]
        run.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
        threading.Thread(target=lambda: run.log.extend(run.proc.stdout), daemon=True).start()
        return run.run_id

    def cancel(self, run_id: int) -> None:
        run = self.runs[run_id]
        run.canceled = True
        if run.proc and run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGTERM)
            run.proc.wait(30)

    # ------------------------------------------------------------------ files

    def local(self, path: str) -> Path:
        p = Path(unquote(path)).resolve()
        if not p.is_relative_to(self.volume):
            raise PermissionError(f"{p} is outside the Volume {self.volume}")
        return p

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict | bytes | None = None):
                data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes)
                                 else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _not_found(self, what: str):
                self._send(404, {"error_code": "NOT_FOUND", "message": f"{what} does not exist"})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                try:
                    for prefix, kind in (("/api/2.0/fs/files", "file"), ("/api/2.0/fs/directories", "dir")):
                        if url.path.startswith(prefix):
                            return self._files(kind, fake.local(url.path[len(prefix):]), query)
                    if url.path.endswith("/jobs/runs/submit"):
                        return self._send(200, {"run_id": fake.submit(json.loads(self._body()))})
                    if url.path.endswith("/jobs/runs/get"):
                        run = fake.runs[int(query["run_id"])]
                        return self._send(200, {"run_id": run.run_id, "state": run.state(),
                                                "run_page_url": f"{fake.host}/runs/{run.run_id}"})
                    if url.path.endswith("/jobs/runs/cancel"):
                        fake.cancel(int(json.loads(self._body())["run_id"]))
                        return self._send(200, {})
                    self._not_found(url.path)
                except PermissionError as exc:
                    self._send(403, {"error_code": "PERMISSION_DENIED", "message": str(exc)})

            def _files(self, kind: str, path: Path, query: dict):
                if self.command == "PUT" and kind == "dir":
                    path.mkdir(parents=True, exist_ok=True)
                    return self._send(200, {})
                if self.command == "PUT":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(self._body())
                    return self._send(200, {})
                if self.command == "DELETE":
                    if not path.exists():
                        return self._not_found(str(path))
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    return self._send(200, {})
                if kind == "dir":
                    if not path.is_dir():
                        return self._not_found(str(path))
                    if self.command == "HEAD":
                        return self._send(200, {})
                    return self._send(200, {"contents": [
                        {"path": str(p), "is_directory": p.is_dir(), "name": p.name} for p in sorted(path.iterdir())]})
                if not path.is_file():
                    return self._not_found(str(path))
                return self._send(200, path.read_bytes())

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _route

        return Handler
