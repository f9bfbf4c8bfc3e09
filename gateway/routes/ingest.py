"""E1: single, batch and bulk ingestion. A success is returned only after JetStream's PubAck."""

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import RequestBody

from gateway.auth.guard import charge_points, require_devices
from gateway.batch_validation import CheckedBatch, check_points, summarize
from gateway.body import decode
from gateway.deps import checked_name, traced_request_id
from gateway.errors import bad_request, unprocessable
from gateway.ingest_bodies import BatchBody, BulkBody
from gateway.params import Identifier
from gateway.state import GatewayState
from gateway.typed_body import RawBody
from telemetry_schemas.api.ingest import (
    MAX_BATCH_POINTS,
    BatchIngestResponse,
    BatchRequest,
    BulkIngestResponse,
    DeviceResult,
    SingleIngestResponse,
)
from telemetry_schemas.codecs import PointError
from telemetry_schemas.values import Point

MAX_BULK_POINTS = 10_000

_batch_decoder = msgspec.json.Decoder(BatchRequest)
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)
# Devices first, each device's points apart: one device's malformed entry fails that device, not the request.
_bulk_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
_device_points = msgspec.json.Decoder(list[msgspec.Raw])

_TAGS = ["ingestion"]


@post("/api/v1/telemetry/devices/{device_id:str}/telemetry", status_code=200, tags=_TAGS,
      summary="Ingest one data point (E1-US1)", dto=RawBody[Point], return_dto=None,
      description="Body: a point {timestamp, metric_name, value, unit?, tags?, metadata?}. 200 once durable; "
      "422 with the field at fault; 503 when NATS did not acknowledge, or with Retry-After while the service is "
      "shedding load (storage more than TELEMETRY_MAX_INGEST_BACKLOG seconds behind).")  # fmt: skip
async def ingest_single(
    device_id: Identifier, data: RequestBody[bytes], gw: NamedDependency[GatewayState], request: Request[Any, Any, Any]
) -> SingleIngestResponse:
    """Validate and publish one point."""
    # decompressed by RawBody, within the size cap
    return await accept_single(gw, request, device_id, data, traced_request_id(request))


async def accept_single(
    gw: GatewayState, request: Request[Any, Any, Any], device_id: str, body: bytes, rid: str | None
) -> SingleIngestResponse:
    """E1-US1's answer to a request (also called by gateway/fast_ingest.py, which answers the same requests).

    ``body``: the request's JSON, decompressed; ``rid``: its request id if the client sent it (carried on the
    message's headers), else None.
    """
    gw.backlog.admit()
    checked_name(device_id, "device_id")
    charge_points(request, 1)
    raw = decode(body, _raw_decoder)
    checked = check_points([raw], "", gw.definitions.check, body)
    if checked.errors:
        error = checked.errors[0]
        raise unprocessable(f"{error.field.removeprefix('[0]').lstrip('.') or 'body'}: {error.error}")
    point = checked.points[0]
    await gw.publisher.publish_points(device_id, checked.raw_points, None, rid)
    return SingleIngestResponse(
        success=True, message="Data point ingested successfully", device_id=device_id, metric_name=point.metric_name
    )


def _result_status(checked: CheckedBatch) -> int:
    # Partial success is a 200 with the rejected points listed; nothing valid means nothing done: 422.
    return 200 if checked.raw_points else 422


@post("/api/v1/telemetry/devices/{device_id:str}/telemetry/batch", status_code=200, tags=_TAGS,
      summary="Ingest up to 1000 points of one device (E1-US2)", dto=RawBody[BatchBody], return_dto=None,
      description="Body: {data_points: [...], batch_id?}. Each point is validated alone: valid points are "
      "stored, rejected ones are listed in `errors` with index and field (200 if any point was stored, 422 if "
      "none). More than 1000 points: 400. Re-sending the same batch_id with the same points stores them once. "
      "Content-Encoding gzip, zstd and lz4 are accepted.")  # fmt: skip
async def ingest_batch(
    device_id: Identifier, data: RequestBody[bytes], gw: NamedDependency[GatewayState], request: Request[Any, Any, Any]
) -> Response[BatchIngestResponse]:
    """Validate each point, publish the valid ones as one message, report the rest by index."""
    gw.backlog.admit()
    checked_name(device_id, "device_id")
    body = data  # decompressed by RawBody, within the size cap
    batch = decode(body, _batch_decoder)
    total = len(batch.data_points)
    if total == 0:
        raise unprocessable("data_points: is empty; send between 1 and 1000 points")
    if total > MAX_BATCH_POINTS:
        raise bad_request(f"data_points: has {total} points; a batch holds at most {MAX_BATCH_POINTS}")
    charge_points(request, total)
    checked = check_points(batch.data_points, "data_points", gw.definitions.check, body)
    if checked.raw_points:
        await gw.publisher.publish_points(device_id, checked.raw_points, batch.batch_id, traced_request_id(request))
    failed = len(checked.errors)
    result = BatchIngestResponse(
        success=failed == 0,
        ingested_count=len(checked.raw_points),
        failed_count=failed,
        total_count=total,
        errors=checked.errors,
        batch_id=batch.batch_id,
        detail=summarize(checked.errors, total) if failed else None,
    )
    return Response(result, status_code=_result_status(checked))


def _device_failure(device_id: str, total: int, detail: str, field: str) -> DeviceResult:
    return DeviceResult(
        success=False, ingested_count=0, failed_count=total, total_count=total,
        errors=[PointError(index=-1, field=field, error=detail)], detail=detail,
    )  # fmt: skip


@post("/api/v1/telemetry/bulk", status_code=200, tags=_TAGS,
      summary="Ingest points of many devices (E1-US3)", dto=RawBody[BulkBody], return_dto=None,
      description="Body: {device_id: [points...], ...}. Each device is validated and published on its own: one "
      "device failing never fails the others. Up to 1000 points per device and 10,000 per request. "
      "200 if any point was stored, else 422; per-device results in `results`.")  # fmt: skip
async def ingest_bulk(
    data: RequestBody[bytes], gw: NamedDependency[GatewayState], request: Request[Any, Any, Any]
) -> Response[BulkIngestResponse]:
    """Validate every device's points, publish each device's valid points concurrently."""
    gw.backlog.admit()
    body = data  # decompressed by RawBody, within the size cap
    entries = decode(body, _bulk_decoder)
    if not entries:
        raise unprocessable('body: has no devices; send {"<device_id>": [points...]}')
    results: dict[str, DeviceResult] = {}
    devices: dict[str, list[msgspec.Raw]] = {}
    for device_id, entry in entries.items():
        try:
            devices[device_id] = _device_points.decode(entry)
        except msgspec.DecodeError as exc:
            detail = f"{device_id}: {exc} (a device's points are an array of point objects)"
            results[device_id] = _device_failure(device_id, 0, detail, device_id)
    total = sum(len(points) for points in devices.values())
    if total > MAX_BULK_POINTS:
        raise bad_request(f"body: has {total} points; a bulk request holds at most {MAX_BULK_POINTS}")
    require_devices(request, entries.keys())
    charge_points(request, total)
    rid = traced_request_id(request)
    to_publish: list[tuple[str, CheckedBatch]] = []
    for device_id, raws in devices.items():
        try:
            checked_name(device_id, "device_id")
        except Exception as exc:
            results[device_id] = _device_failure(device_id, len(raws), str(exc), device_id)
            continue
        if not raws:
            results[device_id] = _device_failure(device_id, 0, f"{device_id}: has no points", device_id)
            continue
        if len(raws) > MAX_BATCH_POINTS:
            detail = f"{device_id}: has {len(raws)} points; at most {MAX_BATCH_POINTS} per device"
            results[device_id] = _device_failure(device_id, len(raws), detail, device_id)
            continue
        checked = check_points(raws, device_id, gw.definitions.check, body)
        to_publish.append((device_id, checked))
        failed = len(checked.errors)
        results[device_id] = DeviceResult(
            success=failed == 0,
            ingested_count=len(checked.raw_points),
            failed_count=failed,
            total_count=len(raws),
            errors=checked.errors,
            detail=summarize(checked.errors, len(raws)) if failed else None,
        )
    publishing = [(d, c) for d, c in to_publish if c.raw_points]
    outcomes = await asyncio.gather(
        *(gw.publisher.publish_points(d, c.raw_points, None, rid) for d, c in publishing), return_exceptions=True
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures and len(failures) == len(outcomes):
        raise failures[0]  # NATS is down for everyone: a 503, not a per-device story
    for (device_id, checked), outcome in zip(publishing, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            n = len(checked.raw_points) + len(checked.errors)
            results[device_id] = _device_failure(device_id, n, str(outcome), device_id)
    ingested = sum(r.ingested_count for r in results.values())
    ok = sum(1 for r in results.values() if r.success)
    response = BulkIngestResponse(
        success=ok == len(results),
        total_devices=len(results),
        successful_devices=ok,
        failed_devices=len(results) - ok,
        ingested_count=ingested,
        failed_count=total - ingested,
        total_count=total,
        results=results,
        detail=None if ingested else f"no point stored: {len(results) - ok} of {len(results)} devices failed",
    )
    return Response(response, status_code=200 if ingested else 422)


ROUTES = [ingest_single, ingest_batch, ingest_bulk]
