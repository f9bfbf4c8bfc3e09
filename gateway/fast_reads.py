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
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import msgspec
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from gateway.body import decode
from gateway.errors import ApiError
from gateway.fast_path import guard, plain_json, read_body, respond, route_template
from gateway.metrics import FAST_READ_ANSWERS
from gateway.routes.queries import answer_query, get_latest, lookback_window, no_latest, query
from telemetry_schemas.api.queries import QueryRequest
from telemetry_schemas.enums import ApiKeyScope
from telemetry_schemas.fields import SUBJECT_SAFE

LATEST_PATH = re.compile(r"/api/v1/telemetry/devices/([^/]{1,128})/metrics/([^/]{1,128})/latest")
QUERY_PATH = "/api/v1/telemetry/query"
_SAFE = re.compile(SUBJECT_SAFE)
_query_body = msgspec.json.Decoder(QueryRequest)


LATEST_ROUTE, QUERY_ROUTE = route_template(get_latest), route_template(query)


def _lookback(query_string: bytes) -> str | None:
    """The look-back asked for ("24h" when absent), or None when the query holds anything else."""
    if not query_string:
        return "24h"
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "lookback":
        return None
    return pairs[0][1]


async def fast_latest(
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
    request = await guard(app, scope, receive, send, LATEST_ROUTE, ApiKeyScope.READ)
    if request is None:
        return False

    async def work(_rid: str) -> msgspec.Struct:
        since = datetime.now(UTC) - window
        found = await app.state.gw.latest_reads.latest(device_id, metric, since)
        if found is None:
            raise no_latest(device_id, metric, lookback)
        return found

    await respond(app, scope, receive, send, request, LATEST_ROUTE, work, start, FAST_READ_ANSWERS)
    return True


async def fast_query(app: Litestar, scope: Scope, receive: Receive, send: Send, start: float) -> tuple[bool, Receive]:
    """Answer POST /query: (True, _) when answered; else (False, a receive that replays the body read)."""
    if not plain_json(scope):
        return False, receive
    body, replay = await read_body(receive, app.state.gw.settings.max_body_bytes)
    if body is None:
        return False, replay
    try:
        data = decode(body, _query_body)
    except Exception:
        return False, replay  # 400 / 422: the route's DTO words it
    scope["path_params"] = {}
    request = await guard(app, scope, replay, send, QUERY_ROUTE, ApiKeyScope.READ)
    if request is None:
        return False, replay

    async def work(_rid: str) -> msgspec.Struct:
        return await answer_query(data, app.state.gw)

    await respond(app, scope, replay, send, request, QUERY_ROUTE, work, start, FAST_READ_ANSWERS)
    return True, replay
