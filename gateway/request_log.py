"""Log requests that failed or were slow, with their request id.

A full access log would cost CPU on the ingestion hot path and drown the failures in successes.
"""

import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Receive, Scope, Send

from telemetry_core.headers import REQUEST_ID

SLOW_S = 1.0
_REQUEST_ID = REQUEST_ID.lower().encode()
log = structlog.get_logger()  # a lazy proxy: binding here would freeze the pre-configuration renderer


def request_logging(app: ASGIApp) -> ASGIApp:
    """ASGI middleware factory: one structured line per 4xx/5xx or slow request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            if status >= 400 or elapsed > SLOW_S:
                headers = dict(scope.get("headers") or [])
                fields = {
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                    "request_id": headers.get(_REQUEST_ID, b"").decode(errors="replace") or None,
                }
                (log.warning if status >= 500 else log.info)("request", **fields)

    return middleware
