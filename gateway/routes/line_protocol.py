"""InfluxDB line protocol ingestion: POST /api/v2/write (InfluxDB 2.x) and POST /write (InfluxDB 1.x).

Telegraf's ``outputs.influxdb_v2`` / ``outputs.influxdb`` and any Influx client can write here unchanged.
Each line's fields become points (naming in gateway/line_points.py), checked by the same admission rule
and metric definitions as the JSON API, published as one signed POINTS message per device, and answered
only after JetStream's PubAck: 204, as InfluxDB answers. Refused lines → 400 naming each line, with every
good line stored (InfluxDB's "partial write"). ``org``, ``bucket``, ``db`` and ``rp`` are accepted and
ignored: this service has one store.
"""

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import Parameter, RequestBody

from gateway.auth.guard import charge_points, require_devices
from gateway.batch_validation import check_points
from gateway.deps import checked_name, traced_request_id
from gateway.errors import ApiError
from gateway.line_points import PRECISIONS, DevicePoints, translate
from gateway.line_protocol import LineError
from gateway.line_protocol_bodies import (
    InfluxV1Error,
    InfluxV2Error,
    LineProtocolOperation,
    LineProtocolText,
    RefusedLine,
)
from gateway.openapi import errors
from gateway.state import GatewayState
from gateway.typed_body import RawBody
from telemetry_schemas.api.ingest import MAX_BATCH_POINTS

_TAGS = ["ingestion"]
_SHOWN = 10  # refused lines named in the message (all of them are in ``errors``)
# Lines per request. Parsing is CPU work in the gateway: without a bound a 16 MiB body would hold a core for
# seconds. Telegraf sends metric_batch_size (default 1000) lines per request, and on a 413 its InfluxDB
# outputs split the batch and retry, so the bound costs a Telegraf user nothing.
MAX_LINES = 20_000
# Above this many lines the parse runs in a worker thread, so the event loop keeps serving other requests.
_THREAD_LINES = 1_000
_DOC = (
    "Body: InfluxDB line protocol (Content-Encoding gzip, zstd or lz4 accepted). Field `f` of measurement `m` is "
    "the metric `m_f` (a field named `value` is the metric `m`); the device is the first of the tags "
    "TELEMETRY_LINE_PROTOCOL_DEVICE_TAGS (default `device_id`, then `host`) the line has, the other tags are "
    "the point's tags. `precision`: ns (default), us/u, ms, s (also m, h). A line without a timestamp takes "
    "the server's time. At most 20,000 lines per request (else 413). 204 once durable; 400 naming every "
    "refused line by number, with the good lines stored "
    "(retrying such a request stores nothing twice: points are upserted). Credentials: `Authorization: Token "
    "<key>`, `Authorization: Basic` or `?u=&p=` with the key as password, or the usual X-Api-Key / Bearer."
)


def _refused_detail(refused: list[LineError], lines: int, stored: int) -> str:
    shown = "; ".join(f"line {e.line}: {e.error}" for e in refused[:_SHOWN])
    more = f" (and {len(refused) - _SHOWN} more)" if len(refused) > _SHOWN else ""
    bad = len({e.line for e in refused})
    return f"partial write: {bad} of {lines} lines refused, {stored} points stored: {shown}{more}"


def _check_device(
    device: str, found: DevicePoints, check: Any, source: bytes | None
) -> tuple[Sequence[bytes], list[LineError]]:
    """The device's valid raw points, and its refused points as line errors (device id, shape, definitions).

    ``source``: the body the points were built from when it holds no NUL character (else None): check_points
    then skips its per-point NUL check unless the body holds the escape itself (see the call).
    """
    try:
        checked_name(device, "device id")
    except Exception as exc:
        reason = str(getattr(exc, "detail", exc))
        return [], [LineError(line, reason) for line in sorted(set(found.lines))]
    checked = check_points(found.raws, "", check, source)
    refused = []
    for e in checked.errors:
        field = e.field.split("]", 1)[1].lstrip(".") or "point"
        name = found.metrics[e.index]
        refused.append(LineError(found.lines[e.index], f"metric {name!r} of device {device!r}: {field}: {e.error}"))
    return checked.raw_points, refused


async def _write(
    body: bytes, precision: str, gw: GatewayState, request: Request[Any, Any, Any], v2: bool
) -> Response[Any]:
    def refuse(refused: list[LineError], lines: int, stored: int, message: str | None = None) -> Response[Any]:
        detail = message or _refused_detail(refused, lines, stored)
        items = [RefusedLine(line=e.line, error=e.error) for e in refused]
        if v2:
            return Response(InfluxV2Error(code="invalid", message=detail, detail=detail, errors=items), status_code=400)
        return Response(InfluxV1Error(error=detail, detail=detail, errors=items), status_code=400)

    gw.backlog.admit()  # storage too far behind: 503 + Retry-After (Telegraf retries it)
    factor = PRECISIONS.get(precision.strip())
    if factor is None:
        return refuse([], 0, 0, f"precision {precision!r} is invalid: use ns, us (u), ms or s (also m, h)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return refuse([], 0, 0, f"body is not UTF-8 text: {exc}")
    count = text.count("\n") + (not text.endswith("\n"))
    if count > MAX_LINES:
        raise ApiError(413, f"body has {count} lines; at most {MAX_LINES} per request: send smaller batches "
                            "(Telegraf: metric_batch_size)")  # fmt: skip
    tags, now = gw.settings.line_protocol_device_tags, time.time_ns()
    dots = gw.settings.line_protocol_dots == "underscore"
    if count > _THREAD_LINES:
        read = await asyncio.to_thread(translate, text, tags, factor, now, dots)
    else:
        read = translate(text, tags, factor, now, dots)
    lines, refused, devices = read.lines, read.refused, read.devices
    if lines == 0:
        return refuse([], 0, 0, "body has no points: send line protocol, one point per line")
    require_devices(request, devices.keys())
    charge_points(request, sum(len(d.raws) for d in devices.values()))
    check = gw.definitions.check
    rid = traced_request_id(request)
    messages: list[tuple[str, Sequence[bytes]]] = []
    # The points' JSON is built from this body: a NUL escape can be in it only if the body holds a NUL character
    # (encoded as the escape) or the escape's text itself (check_points looks for that in ``source``).
    source = body if b"\x00" not in body else None
    for device, found in devices.items():
        valid, bad = _check_device(device, found, check, source)
        refused += bad
        # One message per device; a device with more points than a batch holds is split, so that no
        # message outgrows the broker's max_payload (the JSON API's per-device limit).
        messages += [(device, valid[i : i + MAX_BATCH_POINTS]) for i in range(0, len(valid), MAX_BATCH_POINTS)]
    outcomes = await asyncio.gather(
        *(gw.publisher.publish_points(d, raws, None, rid) for d, raws in messages), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            # Any device not acknowledged: the whole request is a 503 for the client to retry. Points
            # are upserted by (device, metric, time), so the devices that were stored are not doubled.
            raise outcome
    if refused:
        refused.sort(key=lambda e: e.line)
        return refuse(refused, lines, sum(len(raws) for _, raws in messages))
    return Response(None, status_code=204)


# Every error on these paths has InfluxDB's shape (gateway/errors.py adds it to the common ones).
_REFUSED = "Lines refused (the good ones were stored; `errors` names each by number), bad precision, or no body."
_V2_ERRORS = {
    **errors(401, 403, 413, 415, 429, 503, model=InfluxV2Error),
    **errors(400, model=InfluxV2Error, description=_REFUSED),
}
_V1_ERRORS = {
    **errors(401, 403, 413, 415, 429, 503, model=InfluxV1Error),
    **errors(400, model=InfluxV1Error, description=_REFUSED),
}


@post("/api/v2/write", status_code=204, tags=_TAGS, summary="Write InfluxDB line protocol (InfluxDB 2.x API)",
      dto=RawBody[LineProtocolText], return_dto=None, responses=_V2_ERRORS, operation_class=LineProtocolOperation,
      description=_DOC + " `org` and `bucket` are accepted and ignored.")  # fmt: skip
async def write_v2(
    data: RequestBody[bytes],
    gw: NamedDependency[GatewayState],
    request: Request[Any, Any, Any],
    precision: str = Parameter(default="ns", description="Timestamp unit: ns, us, ms or s"),
) -> Response[None]:
    """Store line protocol; 204 once durable, 400 naming refused lines."""
    return await _write(data, precision, gw, request, v2=True)


@post("/write", status_code=204, tags=_TAGS, summary="Write InfluxDB line protocol (InfluxDB 1.x API)",
      dto=RawBody[LineProtocolText], return_dto=None, responses=_V1_ERRORS, operation_class=LineProtocolOperation,
      description=_DOC + " `db` and `rp` are accepted and ignored.")  # fmt: skip
async def write_v1(
    data: RequestBody[bytes],
    gw: NamedDependency[GatewayState],
    request: Request[Any, Any, Any],
    precision: str = Parameter(default="ns", description="Timestamp unit: n/ns, u/us, ms, s, m or h"),
) -> Response[None]:
    """Store line protocol; 204 once durable, 400 naming refused lines."""
    return await _write(data, precision, gw, request, v2=False)


ROUTES = [write_v2, write_v1]
