"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the local S3 server, for tests.

    with FaultProxy(local_s3.endpoint) as proxy:
        proxy.fail_after_apply(r"/bronze/telemetry/_delta_log/0+1\\.json$")
        run `lake ingest` with AWS_ENDPOINT_URL=proxy.endpoint

`fail_after_apply(pattern, times)` forwards the next `times` PUTs whose path matches the regex to
S3 (so the object is written) and then answers 500 instead of S3's answer: the ambiguous outcome
AWS documents ("the request may have succeeded"), which a client timeout on a slow PUT also gives.
`faults` lists the paths that were hit. Every other request passes through unchanged.
"""

from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


class FaultProxy:
    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port)
        self.faults: list[str] = []
        self._rules: list[list] = []   # [compiled pattern, remaining count]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_after_apply(self, pattern: str, times: int = 1) -> None:
        with self._lock:
            self._rules.append([re.compile(pattern), times])

    def _take_fault(self, method: str, path: str) -> bool:
        if method != "PUT":
            return False
        with self._lock:
            for rule in self._rules:
                if rule[1] > 0 and rule[0].search(urlparse(path).path):
                    rule[1] -= 1
                    self.faults.append(path)
                    return True
        return False

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if proxy._take_fault(self.command, self.path):
                    status, data, out_headers = 500, (b"<?xml version=\"1.0\"?><Error><Code>InternalError</Code>"
                                                      b"<Message>injected after apply</Message></Error>"), \
                        [("Content-Type", "application/xml")]
                else:
                    status = resp.status
                    out_headers = [(k, v) for k, v in resp.getheaders()
                                   if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
                    if self.command == "HEAD":  # no body, but the object's length
                        out_headers.append(("Content-Length", resp.getheader("Content-Length", "0")))
                self.send_response(status)
                for k, v in out_headers:
                    self.send_header(k, v)
                if self.command != "HEAD" or status == 500:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
