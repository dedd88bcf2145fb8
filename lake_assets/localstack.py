"""A local S3 (a moto server on 127.0.0.1) for the demo, tests and benchmarks.

    with LocalS3() as s3:
        s3.apply_env()                       # AWS_ENDPOINT_URL & co. for boto3 and Sail
        s3.create_buckets("lake-landing", "lake-warehouse")

The server is a subprocess (`python -m moto.server`); it is killed on `stop()`, on leaving the
`with` block, and at interpreter exit (and, on Linux, when this process dies), so no orphan
servers stay around. State is in memory only.

Call `apply_env()` before the first Spark session or S3 client of the process: the embedded Sail
server reads the S3 endpoint once, when it starts, and keeps using it; a second LocalS3 in the same
process (a new port) is not seen by it. In tests, share one server per session.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from lake_assets.errors import LakeError

HOST = "127.0.0.1"
_running: set[LocalS3] = set()


class LocalS3Error(LakeError, RuntimeError):
    """The local S3 server did not start."""


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when its parent dies, even by SIGKILL (atexit cannot run then)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class LocalS3:
    def __init__(self) -> None:
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise LocalS3Error("LocalS3 is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> LocalS3:
        if self.running:
            return self
        for _ in range(3):  # the free port can be taken between picking and binding it
            if self._launch(timeout):
                return self
        raise LocalS3Error(f"moto server exited on start, three times (run `{sys.executable} -m moto.server "
                           f"-H {HOST} -p PORT` to see why)")

    def _launch(self, timeout: float) -> bool:
        """Start the server; False if it exited at once (port taken), LocalS3Error if it never answers."""
        self.port = _free_port()
        # The server's files (moto's request recording, `moto_recording` in its cwd) go to a
        # private folder, not into whatever folder we were started from.
        self._workdir = tempfile.mkdtemp(prefix="local-s3-")
        env = {**os.environ}
        env.setdefault("MOTO_RECORDER_FILEPATH", os.path.join(self._workdir, "moto_recording"))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
            cwd=self._workdir, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in a terminal reaches us, and we stop it
            # PDEATHSIG fires when the *thread* that started the child ends, so only from the main thread.
            preexec_fn=_die_with_parent if sys.platform.startswith("linux")
            and threading.current_thread() is threading.main_thread() else None,
        )
        _running.add(self)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                return False
            try:
                with opener.open(f"{self.endpoint}/moto-api/", timeout=1):
                    return True
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.stop()
        raise LocalS3Error(f"moto server did not answer on {HOST}:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        workdir, self._workdir = self._workdir, None
        _running.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The environment S3 clients (boto3, Sail, deltalake) need to use this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def apply_env(self) -> dict[str, str]:
        """Set `env()` in os.environ (before the first boto3 client or Spark server is made)."""
        values = self.env()
        os.environ.update(values)
        return values

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    def create_buckets(self, *names: str) -> None:
        """Create the buckets that do not exist yet (`name` or `s3://name/...`)."""
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for name in names:
            name = name.removeprefix("s3://").split("/", 1)[0]
            if name not in existing:
                client.create_bucket(Bucket=name)
                existing.add(name)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()
