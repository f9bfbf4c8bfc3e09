"""The two hottest reads, GET …/latest and POST /query, answered beside Litestar's request machinery when they can be.

Litestar's routing, parameter parsing, dependency resolution and response objects cost about as much gateway CPU
per /latest request as everything /latest does itself (docs/benchmarks-fast-reads.md). A request for one of these
routes that is plainly valid (path, query, body) and whose credentials may read is answered here with the same
parts the route uses: the credentials guard's own steps (authenticate, the request rate, the read scope), the
route's own answer function, the same error mapping (``handle_exception``: 404, 422, 503 …), the request id, the
HTTP metrics and the request log line of ``gateway/request_log.py``. Anything else goes to Litestar untouched
(with the body it sent, when one was read): bad identifiers, look-backs or bodies, compressed bodies, other query
parameters, missing or refused credentials (401, 403, 429), HEAD. Every hand-over comes before the request rate
is charged, and every step after the charge answers: a request is never charged twice.

``tests/e2e/test_fast_reads.py`` sends the same requests to a gateway with and without this (TELEMETRY_FAST_READS)
and requires the same status, body and headers.
"""

import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import structlog
from litestar import Litestar, Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth.authenticator import authenticate, authenticator_of
from gateway.auth.guard import SCOPE_KEY
from gateway.body import decode
from gateway.errors import ApiError, handle_exception
from gateway.metrics import FAST_READ_ANSWERS
from gateway.request_log import finished, take_request_id
from gateway.routes.queries import answer_query, get_latest, lookback_window, no_latest, query
from telemetry_schemas.api.queries import QueryRequest
from telemetry_schemas.enums import ApiKeyScope
from telemetry_schemas.fields import SUBJECT_SAFE

_LATEST_PATH = re.compile(r"/api/v1/telemetry/devices/([^/]{1,128})/metrics/([^/]{1,128})/latest")
_QUERY_PATH = "/api/v1/telemetry/query"
_SAFE = re.compile(SUBJECT_SAFE)
_JSON = (b"content-type", b"application/json")
_encode = msgspec.json.Encoder().encode
_query_body = msgspec.json.Decoder(QueryRequest)


def _template(handler: Any) -> str:
    """The route's template as Litestar puts it in the scope (parameter types left out): metrics label by it."""
    return re.sub(r":\w+}", "}", next(iter(handler.paths)))


LATEST_ROUTE, QUERY_ROUTE = _template(get_latest), _template(query)
Work = Callable[[], Awaitable[msgspec.Struct]]


def fast_reads(app: Litestar) -> ASGIApp:
    """The ASGI app the server runs: ``app`` itself, with the plain /latest and /query requests answered first."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, start = scope.get("method"), time.perf_counter()
            if method == "GET" and (matched := _LATEST_PATH.fullmatch(scope["path"])) is not None:
                if await _latest(app, scope, receive, send, start, *matched.groups()):
                    return
            elif method == "POST" and scope["path"] == _QUERY_PATH:
                answered, receive = await _query(app, scope, receive, send, start)
                if answered:
                    return
        await app(scope, receive, send)

    return asgi


def _lookback(query_string: bytes) -> str | None:
    """The look-back asked for ("24h" when absent), or None when the query holds anything else."""
    if not query_string:
        return "24h"
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "lookback":
        return None
    return pairs[0][1]


async def _latest(
    app: Litestar, scope: Scope, receive: Receive, send: Send, start: float, device_id: str, metric: str
) -> bool:
    """Answer GET …/latest and return True, or return False (nothing sent, nothing charged) for Litestar."""
    if not (_SAFE.match(device_id) and _SAFE.match(metric)):
        return False
    lookback = _lookback(scope["query_string"])
    if lookback is None:
        return False
    try:
        window = lookback_window(lookback)
    except ApiError:
        return False  # 400: the route words it
    scope["path_params"] = {"device_id": device_id, "metric_name": metric}
    request = await _guard(app, scope, receive, send, LATEST_ROUTE)
    if request is None:
        return False

    async def work() -> msgspec.Struct:
        since = datetime.now(UTC) - window
        found = await app.state.gw.latest_reads.latest(device_id, metric, since)
        if found is None:
            raise no_latest(device_id, metric, lookback)
        return found

    await _respond(app, scope, receive, send, request, LATEST_ROUTE, work, start)
    return True


async def _query(app: Litestar, scope: Scope, receive: Receive, send: Send, start: float) -> tuple[bool, Receive]:
    """Answer POST /query: (True, _) when answered; else (False, a receive that replays the body read)."""
    headers = dict(scope["headers"])
    kind = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
    if b"content-encoding" in headers or kind != b"application/json":
        return False, receive
    body, replay = await _read_body(receive, app.state.gw.settings.max_body_bytes)
    if body is None:
        return False, replay
    try:
        data = decode(body, _query_body)
    except Exception:
        return False, replay  # 400 / 422: the route's DTO words it
    scope["path_params"] = {}
    request = await _guard(app, scope, replay, send, QUERY_ROUTE)
    if request is None:
        return False, replay
    await _respond(app, scope, replay, send, request, QUERY_ROUTE, lambda: answer_query(data, app.state.gw), start)
    return True, replay


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The whole body (None when it is larger than ``limit`` or the client left), and a receive that replays it."""
    read: list[Any] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":  # the client went away: Litestar sees the same
            return None, _replaying(read, receive)
        size += len(message.get("body", b""))
        if size > limit:  # Litestar answers 413
            return None, _replaying(read, receive)
        if not message.get("more_body", False):
            return b"".join(m.get("body", b"") for m in read), _replaying(read, receive)


def _replaying(read: list[Message], receive: Receive) -> Receive:
    """A receive that hands out the messages already read, in order, then reads on."""
    pending = list(read)

    async def replay() -> Any:
        return pending.pop(0) if pending else await receive()

    return replay


async def _guard(
    app: Litestar, scope: Scope, receive: Receive, send: Send, route: str
) -> Request[Any, Any, Any] | None:
    """The credentials guard's steps for a read; None (nothing charged) when Litestar's guard must answer."""
    scope["app"] = scope["litestar_app"] = app  # as Litestar.__call__ sets them: the request reads app.state
    scope["path_template"] = route
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    try:
        principal = await authenticate(request)
    except Exception:
        return None  # 401 (or the auth service away)
    if not principal.may(ApiKeyScope.READ):
        return None  # 403
    try:
        authenticator_of(request).requests.charge(principal.limit_key)
    except Exception:
        return None  # 429: a refused charge takes nothing
    scope[SCOPE_KEY] = principal  # type: ignore[literal-required]
    return request


async def _respond(
    app: Litestar,
    scope: Scope,
    receive: Receive,
    send: Send,
    request: Request[Any, Any, Any],
    route: str,
    work: Work,
    start: float,
) -> None:
    """Run ``work`` and send its answer as JSON, or its exception as the app's error mapping words it.

    ``start``: when the request reached the gateway's app (metrics and the slow-request log count from there).
    """
    rid, supplied = take_request_id(scope)
    tokens = structlog.contextvars.bind_contextvars(request_id=rid)
    status = 500
    try:
        try:
            body = _encode(await work())
        except Exception as exc:  # the route's error mapping, as Litestar would apply it
            response = handle_exception(request, exc)
            status = response.status_code or 500
            headers = [(b"x-request-id", rid.encode())]
            await response.to_asgi_response(app, request, encoded_headers=headers)(scope, receive, send)
            return
        status = 200
        headers = [_JSON, (b"content-length", str(len(body)).encode()), (b"x-request-id", rid.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
    finally:
        finished(route, str(scope.get("method")), scope["path"], status, time.perf_counter() - start, supplied)
        FAST_READ_ANSWERS.labels(route, str(status)).inc()
        structlog.contextvars.reset_contextvars(**tokens)
