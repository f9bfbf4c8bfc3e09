"""Each API operation as data (method, path, params, body, answer type), executed by the sync or async client.

Keeping the operations here once means the two clients cannot drift apart.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import msgspec

from telemetry_schemas.api.alerts import AlertList, AlertResponse
from telemetry_schemas.api.ingest import BatchIngestResponse, BulkIngestResponse, SingleIngestResponse
from telemetry_schemas.api.queries import (
    AggregatedDataResponse,
    Aggregation,
    DeviceMetricsResponse,
    LatestValueResponse,
    QueryRequest,
    TelemetryDataResponse,
)
from telemetry_schemas.api.stats import ServiceStatsResponse
from telemetry_schemas.api.stream import CancelResponse, ConnectTokenResponse, SubscribeRequest, SubscribeResponse
from telemetry_schemas.values import Point

T = TypeVar("T")
API = "/api/v1/telemetry"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the decoder for its answer."""

    method: str
    path: str
    decoder: "msgspec.json.Decoder[T]"
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    # Safe to send again after a connection failure or a 503/429 (points upsert; reads change nothing).
    retry: bool = True


def _seg(name: str) -> str:
    return quote(name, safe="")


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# Decoders are built once (msgspec's advice) and shared by every call.
_SINGLE = msgspec.json.Decoder(SingleIngestResponse)
_BATCH = msgspec.json.Decoder(BatchIngestResponse)
_BULK = msgspec.json.Decoder(BulkIngestResponse)
_DATA = msgspec.json.Decoder(TelemetryDataResponse)
_LATEST = msgspec.json.Decoder(LatestValueResponse)
_METRICS = msgspec.json.Decoder(DeviceMetricsResponse)
_AGG = msgspec.json.Decoder(AggregatedDataResponse)
_ALERTS = msgspec.json.Decoder(AlertList)
_ALERT = msgspec.json.Decoder(AlertResponse)
_SUB = msgspec.json.Decoder(SubscribeResponse)
_TOKEN = msgspec.json.Decoder(ConnectTokenResponse)
_CANCEL = msgspec.json.Decoder(CancelResponse)
_STATS = msgspec.json.Decoder(ServiceStatsResponse)


def send_point(device_id: str, point: Point) -> Call[SingleIngestResponse]:
    """POST one point (200 once durable)."""
    return Call("POST", f"{API}/devices/{_seg(device_id)}/telemetry", _SINGLE, body=point)


def send_batch(device_id: str, points: Sequence[Point], batch_id: str | None = None) -> Call[BatchIngestResponse]:
    """POST up to 1000 points of one device; bad points come back in ``errors`` by index."""
    body: dict[str, Any] = {"data_points": list(points)}
    if batch_id is not None:
        body["batch_id"] = batch_id
    return Call("POST", f"{API}/devices/{_seg(device_id)}/telemetry/batch", _BATCH, body=body)


def send_bulk(points: dict[str, list[Point]]) -> Call[BulkIngestResponse]:
    """POST points of many devices in one request (at most 1000 per device, 10,000 in all)."""
    return Call("POST", f"{API}/bulk", _BULK, body=points)


def query(request: QueryRequest) -> Call[TelemetryDataResponse]:
    """POST /query (a read: safe to retry)."""
    return Call("POST", f"{API}/query", _DATA, body=request)


def latest(device_id: str, metric_name: str, lookback: str | None = None) -> Call[LatestValueResponse]:
    """The newest value of one series."""
    params = {"lookback": lookback} if lookback else {}
    return Call("GET", f"{API}/devices/{_seg(device_id)}/metrics/{_seg(metric_name)}/latest", _LATEST, params)


def device_metrics(device_id: str) -> Call[DeviceMetricsResponse]:
    """The metric names a device has data for."""
    return Call("GET", f"{API}/devices/{_seg(device_id)}/metrics", _METRICS)


def aggregated(
    metric_name: str,
    aggregation: Aggregation,
    interval: int,
    start: datetime,
    end: datetime,
    device_id: str | None = None,
) -> Call[AggregatedDataResponse]:
    """One value per interval bucket of one metric (across devices unless ``device_id``)."""
    params: dict[str, Any] = {
        "metric_name": metric_name,
        "aggregation_type": aggregation,
        "interval": interval,
        "start_time": _iso(start),
        "end_time": _iso(end),
    }
    if device_id:
        params["device_id"] = device_id
    return Call("GET", f"{API}/aggregated", _AGG, params)


def alerts(
    status: str | None = None,
    level: str | None = None,
    device_id: str | None = None,
    rule_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Call[AlertList]:
    """A page of alerts, newest first."""
    given = {"status": status, "level": level, "device_id": device_id, "rule_id": rule_id}
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    params.update(limit=limit, offset=offset)
    return Call("GET", f"{API}/alerts", _ALERTS, params)


def alert_transition(alert_id: str, action: str, note: str | None = None) -> Call[AlertResponse]:
    """PUT acknowledge / resolve. Not retried: a repeat after a lost answer would be a 409."""
    body = {"note": note} if note else {}
    return Call("PUT", f"{API}/alerts/{_seg(alert_id)}/{action}", _ALERT, body=body, retry=False)


def subscribe(request: SubscribeRequest) -> Call[SubscribeResponse]:
    """Create a live subscription; its socket is opened by the streaming module."""
    return Call("POST", f"{API}/subscribe", _SUB, body=request)


def connect_token(subscription_id: str) -> Call[ConnectTokenResponse]:
    """A fresh connect token (the first one lives TELEMETRY_CONNECT_TOKEN_TTL, 120 s by default)."""
    return Call("POST", f"{API}/subscribe/{_seg(subscription_id)}/token", _TOKEN)


def unsubscribe(subscription_id: str) -> Call[CancelResponse]:
    """Cancel a subscription (closes its socket)."""
    return Call("DELETE", f"{API}/subscribe/{_seg(subscription_id)}", _CANCEL)


def service_stats() -> Call[ServiceStatsResponse]:
    """Service statistics."""
    return Call("GET", f"{API}/stats", _STATS)


def export_params(
    device_ids: Iterable[str], metric_names: Iterable[str], start: datetime, end: datetime
) -> dict[str, str]:
    """Query parameters of GET /export/csv (comma-separated lists)."""
    return {
        "device_ids": ",".join(device_ids),
        "metric_names": ",".join(metric_names),
        "start_time": _iso(start),
        "end_time": _iso(end),
    }


EXPORT_PATH = f"{API}/export/csv"
