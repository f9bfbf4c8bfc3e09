"""What the fast paths (gateway/fast_reads.py, gateway/fast_ingest.py) share: body, guard, answer.

A fast path answers a plainly valid request with the parts its Litestar route uses, or hands it to Litestar
untouched: every hand-over comes before the request rate is charged, and every step after the charge answers,
so a request is never charged twice.
"""

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from litestar import Litestar, Request
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import Counter

from gateway.auth.authenticator import authenticate, authenticator_of
from gateway.auth.guard import SCOPE_KEY
from gateway.errors import handle_exception
from gateway.request_log import finished, take_request_id
from telemetry_schemas.enums import ApiKeyScope

_JSON = (b"content-type", b"application/json")
_encode = msgspec.json.Encoder().encode
# The work of a request, given its request id (the route's answer function, or what raises its error).
Work = Callable[[str], Awaitable[msgspec.Struct]]
# prometheus_client's labels() validates and locks on every call: children kept per (counter, route, status),
# as gateway/request_log.py keeps its own (bounded: two counters, a few routes and statuses).
_ANSWERED: dict[tuple[int, str, int], Any] = {}


def route_template(handler: Any) -> str:
    """A route's path as Litestar puts it in the scope (parameter types left out): metrics label by it."""
    return re.sub(r":\w+}", "}", next(iter(handler.paths)))


def plain_json(scope: Scope) -> bool:
    """Whether the request's body is uncompressed JSON (anything else is Litestar's to decode or refuse)."""
    headers = dict(scope["headers"])
    kind = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
    return b"content-encoding" not in headers and kind == b"application/json"


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
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


async def guard(
    app: Litestar,
    scope: Scope,
    receive: Receive,
    send: Send,
    route: str,
    needed: ApiKeyScope,
    device_id: str | None = None,
) -> Request[Any, Any, Any] | None:
    """The credentials guard's steps; None (nothing charged) when Litestar's guard must answer.

    ``needed``: the route's scope; ``device_id``: the device the request writes (a key limited to some devices).
    """
    scope["app"] = scope["litestar_app"] = app  # as Litestar.__call__ sets them: the request reads app.state
    scope["path_template"] = route
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    try:
        principal = await authenticate(request)
    except Exception:
        return None  # 401 (or the auth service away)
    if not principal.may(needed):
        return None  # 403
    if device_id is not None and principal.devices and not principal.may_write(device_id):
        return None  # 403: this key may not write this device
    try:
        authenticator_of(request).requests.charge(principal.limit_key)
    except Exception:
        return None  # 429: a refused charge takes nothing
    scope[SCOPE_KEY] = principal  # type: ignore[literal-required]
    return request


async def respond(
    app: Litestar,
    scope: Scope,
    receive: Receive,
    send: Send,
    request: Request[Any, Any, Any],
    route: str,
    work: Work,
    start: float,
    answers: Counter,
) -> None:
    """Run ``work`` and send its answer as JSON, or its exception as the app's error mapping words it.

    ``start``: when the request reached the gateway's app (metrics and the slow-request log count from there);
    ``answers``: the fast path's counter, by route and status.
    """
    rid, supplied = take_request_id(scope)
    tokens = structlog.contextvars.bind_contextvars(request_id=rid)
    status = 500
    try:
        try:
            body = _encode(await work(rid))
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
        child = _ANSWERED.get((id(answers), route, status))
        if child is None:
            child = _ANSWERED[(id(answers), route, status)] = answers.labels(route, str(status))
        child.inc()
        structlog.contextvars.reset_contextvars(**tokens)
