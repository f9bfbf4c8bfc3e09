"""A real HTTP server in front of the gateway that can answer 503 (or 429) before it forwards, and records
every request it saw (headers and raw body), so client tests see retries, waits and gzip on the wire."""

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

# Hop-by-hop or recomputed headers: never forwarded as they came.
_SKIP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


@dataclass
class Seen:
    """One request as it arrived: when, what, and the body bytes exactly as sent (still compressed)."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class FlakyProxy:
    """Answers the first ``fail`` requests with ``status`` (and ``Retry-After`` when given), then forwards."""

    upstream: str
    fail: int = 0
    status: int = 503
    retry_after: str | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            failing = self.fail > 0
            self.fail -= 1 if failing else 0
        if failing:
            payload = b'{"detail":"test proxy: service unavailable"}'
            status, out_headers, content = self.status, {"Content-Type": "application/json"}, payload
            if self.retry_after is not None:
                out_headers["Retry-After"] = self.retry_after
        else:
            forward = {k: v for k, v in headers.items() if k not in _SKIP}
            r = httpx.request(handler.command, self.upstream + handler.path, headers=forward, content=body, timeout=30)
            status, content = r.status_code, r.content
            out_headers = {k: v for k, v in r.headers.items() if k.lower() not in _SKIP | {"content-encoding"}}
        with self._lock:
            self.seen.append(Seen(time.monotonic(), handler.command, handler.path, headers, body, status))
        handler.send_response(status)
        for k, v in out_headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def requests_to(self, path_part: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path_part in s.path]


@contextmanager
def flaky_proxy(upstream: str, **options: object) -> Iterator[FlakyProxy]:
    """Run a FlakyProxy on a free loopback port for the duration of the block."""
    proxy = FlakyProxy(upstream, **options)  # type: ignore[arg-type]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet: the test asserts on proxy.seen instead
            pass

        do_GET = do_POST = do_PUT = do_DELETE = lambda self: proxy._answer(self)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
