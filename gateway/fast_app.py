"""The ASGI app the gateway serves: the Litestar app, with the plainest hot requests answered in front of it.

gateway/fast_reads.py answers GET …/latest and POST /query, gateway/fast_ingest.py the single-point POST; each
returns whether it answered, and anything it did not answer goes to Litestar (with the body replayed when one was
read). TELEMETRY_FAST_READS and TELEMETRY_FAST_INGEST switch them off.
"""

import time

from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.fast_ingest import SINGLE_PATH, fast_single
from gateway.fast_reads import LATEST_PATH, QUERY_PATH, fast_latest, fast_query


def fast_paths(app: Litestar, *, reads: bool, ingest: bool) -> ASGIApp:
    """``app`` with the fast paths switched on in front of it (``reads``: /latest and /query; ``ingest``)."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            answered, receive = await answer(scope, receive, send)
            if answered:
                return
        await app(scope, receive, send)

    async def answer(scope: Scope, receive: Receive, send: Send) -> tuple[bool, Receive]:
        """(True, _) when answered here; else (False, the receive Litestar reads the request with)."""
        method, path, start = scope.get("method"), scope["path"], time.perf_counter()
        if method == "GET":
            if reads and (latest := LATEST_PATH.fullmatch(path)) is not None:
                return await fast_latest(app, scope, receive, send, start, *latest.groups()), receive
        elif method == "POST":
            if reads and path == QUERY_PATH:
                return await fast_query(app, scope, receive, send, start)
            if ingest and (device := SINGLE_PATH.fullmatch(path)) is not None:
                return await fast_single(app, scope, receive, send, start, device[1])
        return False, receive

    return asgi
