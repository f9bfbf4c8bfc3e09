"""Domain events on the EVENTS stream, one tagged union decoded by one decoder."""

from datetime import datetime
from typing import Any

from telemetry_schemas.base import StreamMessage
from telemetry_schemas.enums import DataType, MetricType


class MetricDefined(StreamMessage, frozen=True, kw_only=True, tag="metric.defined"):
    """A metric definition was created (on subject telemetry.events.metric.<name>)."""

    metric_id: str
    name: str
    data_type: DataType
    metric_type: MetricType = MetricType.GAUGE
    description: str | None = None
    unit: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    retention_days: int = 90
    aggregation_interval: int = 60
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    created_at: datetime
    created_by: str


class MetricDeleted(StreamMessage, frozen=True, kw_only=True, tag="metric.deleted"):
    """A metric definition was deleted; its data points are kept."""

    metric_id: str
    name: str
    deleted_at: datetime
    deleted_by: str


DomainEvent = MetricDefined | MetricDeleted
