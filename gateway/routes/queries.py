"""E3 reads: latest value, a device's metrics, and the time-series query."""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, get, post

from gateway.body import decode, read_body
from gateway.deps import checked_name, state_of
from gateway.errors import bad_request, not_found, unprocessable
from gateway.views.device_metrics import device_metrics
from gateway.views.history import raw_points
from gateway.views.latest import latest_value
from telemetry_core.timebuckets import parse_duration
from telemetry_schemas.api.queries import LatestValueResponse, QueryRequest, TelemetryDataResponse

_query_decoder = msgspec.json.Decoder(QueryRequest)
_TAGS = ["queries"]
MAX_LOOKBACK = timedelta(days=36_500)


@get("/api/v1/telemetry/devices/{device_id:str}/metrics/{metric_name:str}/latest", tags=_TAGS,
     summary="Latest value of a metric (E3-US2)",
     description="The most recent point no older than `lookback` (default 24h; e.g. 30m, 7d, or seconds). "
     "404 when there is none.")  # fmt: skip
async def get_latest(
    device_id: str, metric_name: str, request: Request[Any, Any, Any], lookback: str = "24h"
) -> LatestValueResponse:
    """Read the latest_values read model."""
    checked_name(device_id, "device_id")
    checked_name(metric_name, "metric_name")
    try:
        window = parse_duration(lookback)
    except ValueError as exc:
        raise bad_request(f"lookback: {exc}") from None
    if window > MAX_LOOKBACK:
        raise bad_request("lookback: must be at most 36500d (100 years)")
    since = datetime.now(UTC) - window
    found = await latest_value(state_of(request).pool, device_id, metric_name, since)
    if found is None:
        raise not_found(
            f"no data for metric {metric_name!r} of device {device_id!r} in the last {lookback} "
            "(use ?lookback= to look further back)"
        )
    return found


@get("/api/v1/telemetry/devices/{device_id:str}/metrics", tags=_TAGS,
     summary="Metric names a device has reported (E3-US3)",
     description="A JSON array of unique metric names, sorted; empty when the device has no data.")  # fmt: skip
async def get_device_metrics(device_id: str, request: Request[Any, Any, Any]) -> list[str]:
    """Read the device's metric names."""
    checked_name(device_id, "device_id")
    return await device_metrics(state_of(request).pool, device_id)


def _tag_filters(filters: dict[str, Any] | None) -> dict[str, str] | None:
    """``filters`` are tag equalities, either flat ({"location": "room_1"}) or under "tags"."""
    if not filters:
        return None
    tags = filters.get("tags", filters)
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise unprocessable('filters: must map tag names to string values, e.g. {"location": "room_1"}')
    return tags


@post("/api/v1/telemetry/query", status_code=200, tags=_TAGS,
      summary="Query raw points over a time range (E3-US1)",
      description="Range is half-open [start_time, end_time). Points come in time order, each with device_id "
      "and metric_name; top-level device_id/metric_name are the single one asked for, or \"multiple\". "
      "limit <= 10000 (default 1000). `filters` are tag equalities.")  # fmt: skip
async def query(request: Request[Any, Any, Any]) -> TelemetryDataResponse:
    """Answer a raw query; aggregation arrives with the rollups."""
    gw = state_of(request)
    body = decode(await read_body(request, gw.settings.max_body_bytes), _query_decoder)
    if body.end_time <= body.start_time:
        raise unprocessable("end_time: must be after start_time")
    if body.aggregation is not None:
        raise unprocessable("aggregation: not supported by this release yet; omit it to read raw points")
    points = await raw_points(
        gw.pool,
        metrics=body.metrics,
        devices=body.devices,
        start=body.start_time,
        end=body.end_time,
        tags=_tag_filters(body.filters),
        limit=body.limit,
        offset=body.offset,
    )
    devices = body.devices or sorted({p.device_id for p in points})
    return TelemetryDataResponse(
        device_id=devices[0] if len(devices) == 1 else "multiple",
        metric_name=body.metrics[0] if len(body.metrics) == 1 else "multiple",
        data_points=points,
        count=len(points),
        aggregation=None,
        interval=body.interval,
        start_time=body.start_time,
        end_time=body.end_time,
        limit=body.limit,
        offset=body.offset,
    )


ROUTES = [get_latest, get_device_metrics, query]
