"""Per request: the request id (taken or made, returned, bound to log lines), HTTP metrics, and a log line.

A line is logged for every request that failed or was slow, and for every request whose client sent its own
X-Request-ID (it asked to be traced: the ingest, projection and alert workers log that id too). A full access
log of every success would cost CPU on the ingestion hot path and drown the failures.
"""

import re
import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.metrics import HTTP_REQUESTS, HTTP_SECONDS
from gateway.unique_ids import new_id
from telemetry_core.headers import REQUEST_ID

SLOW_S = 1.0
_REQUEST_ID = REQUEST_ID.lower().encode()
# scope["state"] key: the client sent its own valid X-Request-ID (asked to be traced through the workers).
_TRACED = "telemetry.request_traced"
# What a request id may be: it travels in NATS headers and log lines, so printable and short.
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,64}$")
log = structlog.get_logger()  # a lazy proxy: binding here would freeze the pre-configuration renderer


# prometheus_client's labels() validates and locks on every call (a few µs); the children are kept per label set
# instead. Bounded like the metric itself: route templates, methods and statuses.
_COUNTS: dict[tuple[str, str, int], Any] = {}
_SECONDS: dict[tuple[str, str], Any] = {}


def record(route: str, method: str, status: int, elapsed: float) -> None:
    """Count the request and observe its duration under its route template, method (and status)."""
    counter = _COUNTS.get((route, method, status))
    if counter is None:
        counter = _COUNTS[(route, method, status)] = HTTP_REQUESTS.labels(route, method, str(status))
    counter.inc()
    histogram = _SECONDS.get((route, method))
    if histogram is None:
        histogram = _SECONDS[(route, method)] = HTTP_SECONDS.labels(route, method)
    histogram.observe(elapsed)


def finished(route: str, method: str, path: str | None, status: int, elapsed: float, supplied: bool) -> None:
    """A request is answered: its metrics, and its log line when it failed, was slow or asked to be traced."""
    record(route, method, status, elapsed)
    if status >= 400 or elapsed > SLOW_S or supplied:
        fields = {"method": method, "path": path, "status": status, "ms": round(elapsed * 1000, 1)}
        (log.warning if status >= 500 else log.info)("request", **fields)


def take_request_id(scope: Scope) -> tuple[str, bool]:
    """The client's id when valid, else a new one; put back into the scope so route handlers read the same id."""
    headers = [(k, v) for k, v in scope.get("headers") or [] if k != _REQUEST_ID]
    given = next((v for k, v in scope.get("headers") or [] if k == _REQUEST_ID), None)
    supplied = given is not None and _VALID_ID.match(given) is not None
    rid = given.decode() if supplied and given is not None else new_id()
    scope["headers"] = [*headers, (_REQUEST_ID, rid.encode())]
    scope.setdefault("state", {})[_TRACED] = supplied
    return rid, supplied


def traced(scope: Scope) -> bool:
    """Whether the request's client sent its own X-Request-ID (``take_request_id`` ran for it and said so)."""
    return bool(scope.get("state", {}).get(_TRACED))


def request_logging(app: ASGIApp) -> ASGIApp:
    """ASGI middleware factory (runs after routing: the route template labels the metrics)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        rid, supplied = take_request_id(scope)
        tokens = structlog.contextvars.bind_contextvars(request_id=rid)

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (_REQUEST_ID, rid.encode())]}
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            route = scope.get("path_template") or "unmatched"
            finished(route, str(scope.get("method") or "?"), scope.get("path"), status, time.perf_counter() - start,
                     supplied)  # fmt: skip
            structlog.contextvars.reset_contextvars(**tokens)

    return middleware
