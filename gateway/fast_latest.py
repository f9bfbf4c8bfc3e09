"""GET …/latest, the dashboards' most frequent read, answered beside Litestar's request machinery when it can be.

Litestar's routing, parameter parsing, dependency resolution and response objects cost about as much CPU per
request as everything /latest does itself (docs/benchmarks-gateway.md, "The latest-value fast path"). A request
for /latest whose path and query are plainly valid and whose credentials may read is answered here with the same
parts the route uses: the credentials guard's own steps (authenticate, the request rate, the read scope), the
same ``LatestReads``, the same error mapping (``handle_exception``: 404, 503 …), the request id, the HTTP
metrics and the request log line of ``gateway/request_log.py``. Anything else goes to Litestar untouched: bad
identifiers or look-backs (400), missing or refused credentials (401, 403, 429), other query parameters, HEAD.

``tests/e2e/test_fast_latest.py`` checks that both ways give the same status, body and headers.
"""

import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import structlog
from litestar import Litestar, Request
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.auth.authenticator import authenticate, authenticator_of
from gateway.auth.guard import SCOPE_KEY
from gateway.errors import handle_exception
from gateway.metrics import FAST_LATEST_ANSWERS
from gateway.request_log import SLOW_S, record, take_request_id
from gateway.routes.queries import MAX_LOOKBACK, get_latest, no_latest
from telemetry_core.timebuckets import parse_duration
from telemetry_schemas.enums import ApiKeyScope
from telemetry_schemas.fields import SUBJECT_SAFE

# The route's template as Litestar puts it in the scope (parameter types left out): metrics and logs label by it.
ROUTE = re.sub(r":\w+}", "}", next(iter(get_latest.paths)))
_PATH = re.compile(r"/api/v1/telemetry/devices/([^/]{1,128})/metrics/([^/]{1,128})/latest")
_SAFE = re.compile(SUBJECT_SAFE)
_JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.Encoder().encode
log = structlog.get_logger()


def _lookback(query_string: bytes) -> str | None:
    """The look-back asked for ("24h" when absent), or None when the query holds anything else."""
    if not query_string:
        return "24h"
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "lookback":
        return None
    return pairs[0][1]


def fast_latest(app: Litestar) -> ASGIApp:
    """The ASGI app the server runs: ``app`` itself, with /latest's plain requests answered in front of it."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET":
            matched = _PATH.fullmatch(scope["path"])
            if matched is not None and await _answer(app, scope, receive, send, *matched.groups()):
                return
        await app(scope, receive, send)

    return asgi


async def _answer(app: Litestar, scope: Scope, receive: Receive, send: Send, device_id: str, metric: str) -> bool:
    """Answer the request and return True, or return False (nothing sent, nothing charged) to leave it to Litestar.

    Every False comes before the request rate is charged, and every step after it answers: a request is never
    charged twice.
    """
    if not (_SAFE.match(device_id) and _SAFE.match(metric)):
        return False
    lookback = _lookback(scope["query_string"])
    if lookback is None:
        return False
    try:
        window = parse_duration(lookback)
    except ValueError:
        return False
    if window > MAX_LOOKBACK:
        return False
    scope["app"] = scope["litestar_app"] = app  # as Litestar.__call__ sets them: the request reads app.state
    scope["path_template"] = ROUTE
    scope["path_params"] = {"device_id": device_id, "metric_name": metric}
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    try:
        principal = await authenticate(request)
    except Exception:
        return False  # 401 (or the auth service away): Litestar's guard answers it
    if not principal.may(ApiKeyScope.READ):
        return False
    try:
        authenticator_of(request).requests.charge(principal.limit_key)
    except Exception:
        return False  # 429: not charged; Litestar's guard refuses it the same way
    scope[SCOPE_KEY] = principal  # type: ignore[literal-required]
    start = time.perf_counter()
    rid, supplied = take_request_id(scope)
    tokens = structlog.contextvars.bind_contextvars(request_id=rid)
    status = 500
    try:
        try:
            since = datetime.now(UTC) - window
            found = await app.state.gw.latest_reads.latest(device_id, metric, since)
            if found is None:
                raise no_latest(device_id, metric, lookback)
        except Exception as exc:  # the route's error mapping, as Litestar would apply it
            response = handle_exception(request, exc)
            status = response.status_code or 500
            headers = [(b"x-request-id", rid.encode())]
            await response.to_asgi_response(app, request, encoded_headers=headers)(scope, receive, send)
            return True
        body = _encode(found)
        status = 200
        headers = [*_JSON, (b"content-length", str(len(body)).encode()), (b"x-request-id", rid.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True
    finally:
        elapsed = time.perf_counter() - start
        record(ROUTE, "GET", status, elapsed)
        FAST_LATEST_ANSWERS.labels(str(status)).inc()
        if status >= 400 or elapsed > SLOW_S or supplied:
            fields = {"method": "GET", "path": scope["path"], "status": status, "ms": round(elapsed * 1000, 1)}
            (log.warning if status >= 500 else log.info)("request", **fields)
        structlog.contextvars.reset_contextvars(**tokens)
