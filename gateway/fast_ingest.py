"""The single-point POST (E1-US1) answered beside Litestar's request machinery when it plainly can be.

The most frequent request of a fleet whose devices each send their own readings. Its route does little (decode,
check, publish, answer) and Litestar's routing, middleware, parameter and body extraction and response objects
cost the gateway about as much CPU again (docs/benchmarks-single-point.md). A request with an uncompressed JSON
body, a valid device id in the path and credentials that may write that device is answered here with the route's
own answer function (``accept_single``: the load-shedding check, the points budget, validation, the publish and
its PubAck), the same error mapping, the request id (also on the published message), metrics and log line
(gateway/fast_path.py). Anything else goes to the Litestar route untouched, with the body replayed: compressed or
non-JSON bodies, bodies over the size cap, bad device ids, missing or refused credentials. ``TELEMETRY_FAST_INGEST``
turns it off; ``tests/e2e/test_fast_ingest.py`` requires the same answers both ways.
"""

import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar.types import Receive, Scope, Send

from gateway.fast_path import guard, plain_json, read_body, respond, route_template
from gateway.metrics import FAST_INGEST_ANSWERS
from gateway.request_log import traced
from gateway.routes.ingest import accept_single, ingest_single
from telemetry_schemas.enums import ApiKeyScope
from telemetry_schemas.fields import SUBJECT_SAFE

SINGLE_PATH = re.compile(r"/api/v1/telemetry/devices/([^/]{1,128})/telemetry")
_SAFE = re.compile(SUBJECT_SAFE)
SINGLE_ROUTE = route_template(ingest_single)


async def fast_single(
    app: Litestar, scope: Scope, receive: Receive, send: Send, start: float, device_id: str
) -> tuple[bool, Receive]:
    """Answer one single-point POST: (True, _) when answered; else (False, a receive that replays the body read)."""
    if not _SAFE.match(device_id) or not plain_json(scope):
        return False, receive
    gw: Any = app.state.gw
    body, replay = await read_body(receive, gw.settings.max_body_bytes)
    if body is None:
        return False, replay
    scope["path_params"] = {"device_id": device_id}
    request = await guard(app, scope, replay, send, SINGLE_ROUTE, ApiKeyScope.INGEST, device_id)
    if request is None:
        return False, replay

    async def work(rid: str) -> msgspec.Struct:
        return await accept_single(gw, request, device_id, body, rid if traced(scope) else None)

    await respond(app, scope, replay, send, request, SINGLE_ROUTE, work, start, FAST_INGEST_ANSWERS)
    return True, replay
