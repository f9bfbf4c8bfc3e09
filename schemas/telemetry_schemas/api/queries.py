"""Bodies of the E3 read endpoints."""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from telemetry_schemas.base import ApiBody
from telemetry_schemas.fields import DeviceId, EndTime, MetricName, Offset, UtcTimestamp
from telemetry_schemas.values import Value

MAX_QUERY_LIMIT = 10_000

Aggregation = Literal["avg", "min", "max", "sum", "count", "median", "p95", "p99"]


class QueryRequest(ApiBody):
    """E3-US1 body."""

    metrics: Annotated[list[MetricName], msgspec.Meta(min_length=1, max_length=100)]
    start_time: UtcTimestamp
    end_time: EndTime
    devices: Annotated[list[DeviceId], msgspec.Meta(max_length=1000)] | None = None
    aggregation: Aggregation | None = None
    interval: Annotated[int, msgspec.Meta(ge=1, le=31_536_000)] | None = None
    filters: Annotated[dict[str, Any], msgspec.Meta(max_length=64)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUERY_LIMIT)] = 1000
    offset: Offset = 0


class DataPoint(ApiBody):
    """One point in a query answer; always names its device and metric."""

    timestamp: datetime
    device_id: str
    metric_name: str
    value: Value | None
    unit: str | None = None
    tags: dict[str, str] = {}
    metadata: dict[str, Any] = {}


class Series(ApiBody):
    """The points of one (device, metric), for clients that want series apart."""

    device_id: str
    metric_name: str
    data_points: list[DataPoint]


class TelemetryDataResponse(ApiBody):
    """E3-US1 answer; device_id / metric_name are the one asked for, or "multiple".

    With an aggregation, each point is one interval bucket (timestamp = bucket start). ``source``
    says what answered (raw, rollup_minute, rollup_hour); percentiles from rollups carry
    ``relative_error`` (the sketch's bound), from raw points they are exact (nearest rank).
    """

    device_id: str
    metric_name: str
    data_points: list[DataPoint]
    count: int
    aggregation: str | None
    interval: int | None
    start_time: datetime
    end_time: datetime
    limit: int
    offset: int
    series: list[Series] = []
    source: str = "raw"
    relative_error: float | None = None


class AggregatedPoint(ApiBody):
    """One bucket of /aggregated: its start, the value, and how many points it summarises."""

    timestamp: datetime
    value: float | None
    count: int


class AggregatedDataResponse(ApiBody):
    """E3-US5 answer; device_id null means across all devices."""

    metric_name: str
    device_id: str | None
    aggregation_type: str
    interval: int
    start_time: datetime
    end_time: datetime
    data_points: list[AggregatedPoint]
    count: int
    source: str
    relative_error: float | None = None


class LatestValueResponse(ApiBody):
    """E3-US2 answer."""

    device_id: str
    metric_name: str
    value: Value | None
    unit: str | None
    timestamp: datetime
    tags: dict[str, str]
    metadata: dict[str, Any]


class DeviceMetricsResponse(ApiBody):
    """E3-US3 answer: the device's metric names, sorted; empty when it has no data."""

    device_id: str
    metrics: list[str]
    count: int
