"""A fault-injecting HTTP proxy in front of the real S3 server (moto) the suite starts.

Clients (boto3, pyarrow's S3 filesystem) are pointed at the proxy with ``AWS_ENDPOINT_URL``; the proxy forwards
every request to the real server and, on a seeded share of them, answers instead as a throttled or failing object
store does: ``503 SlowDown``, ``500 InternalError``, a connection reset mid-request (RST), or a stall before the
real answer.  ``down`` fails every request (a store that stays down).  Nothing of the clients is replaced: their
own retry logic meets real HTTP failures (docs/faults.md, "An object store that throttles and fails").
"""

from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

FAULTS = ("slowdown", "internal", "reset", "stall")
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
    "<RequestId>faultproxy</RequestId></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def operation(method: str, path: str, query: str) -> str:
    """GET / PUT / LIST / HEAD / DELETE / POST as S3 sees them (a GET on a bucket is a LIST)."""
    if method == "GET":
        key = path.lstrip("/").partition("/")[2]
        return "LIST" if not key or "list-type" in query or "prefix=" in query else "GET"
    return method


@dataclass
class FaultPlan:
    rate: float = 0.0  # share of requests that get a fault
    seed: int = 0
    ops: tuple[str, ...] = ("GET", "PUT", "LIST", "HEAD")
    faults: tuple[str, ...] = FAULTS
    stall_s: float = 2.0
    down: bool = False  # every request fails with 503 (a store that stays down)


@dataclass
class Stats:
    requests: Counter = field(default_factory=Counter)  # by operation
    injected: Counter = field(default_factory=Counter)  # by (operation, fault)
    lease_errors: int = 0  # faults other than stalls on the dataset lease's objects (what botocore must retry)

    def total(self) -> int:
        return sum(self.injected.values())


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a stalled or reset request closed its end: expected here, not news."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FaultProxy:
    """Threaded reverse proxy on loopback; ``start()`` returns its endpoint URL, ``stop()`` ends it."""

    def __init__(self, upstream: str, plan: FaultPlan | None = None) -> None:
        u = urlparse(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.stats = Stats()
        self._lock = threading.Lock()
        self.set_plan(plan or FaultPlan())
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set_plan(self, plan: FaultPlan) -> None:
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)

    def start(self) -> str:
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------------------------
    def _decide(self, op: str, path: str) -> str | None:
        with self._lock:
            self.stats.requests[op] += 1
            plan = self.plan
            if plan.down:
                fault = "down"
            elif op in plan.ops and self._rng.random() < plan.rate:
                fault = self._rng.choice(plan.faults)
            else:
                return None
            self.stats.injected[(op, fault)] += 1
            if "/_lease/" in path and fault != "stall":
                self.stats.lease_errors += 1
            return fault

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        u = urlparse(h.path)
        op = operation(h.command, u.path, u.query)
        body = _read_body(h)
        fault = self._decide(op, unquote(f"{u.path}?{u.query}"))
        if fault in ("slowdown", "down"):
            return _error(h, 503, "SlowDown", "Please reduce your request rate.")
        if fault == "internal":
            return _error(h, 500, "InternalError", "We encountered an internal error. Please try again.")
        if fault == "reset":
            return _reset(h)
        if fault == "stall":
            time.sleep(self.plan.stall_s)
        self._forward(h, body)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "expect"}
            if body or h.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            h.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                    h.send_header(k, v)
            length = resp.getheader("Content-Length") if h.command == "HEAD" else str(len(data))
            h.send_header("Content-Length", length or "0")
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
        finally:
            conn.close()


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(h.rfile.read(size))
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""


def _error(h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    data = _ERROR_XML.format(code=code, message=message).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/xml")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer', as from a dying front end."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.close_connection = True
    h.connection.close()
