"""Bodies of the E2 metric-definition endpoints."""

from datetime import datetime
from typing import Annotated, Any

import msgspec

from telemetry_schemas.base import ApiBody
from telemetry_schemas.enums import DataType, MetricType
from telemetry_schemas.fields import Metadata, MetricName, Unit
from telemetry_schemas.rules import Description, ShortText


class MetricDefinitionRequest(ApiBody):
    """E2-US1 body. Bounds apply to numeric metrics only."""

    name: MetricName
    data_type: DataType
    description: Description | None = None
    metric_type: MetricType = MetricType.GAUGE
    unit: Unit | None = None
    min_value: float | None = None
    max_value: float | None = None
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 90
    aggregation_interval: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 60
    tags: Annotated[list[ShortText], msgspec.Meta(max_length=32)] = []
    metadata: Metadata = {}


class MetricDefinitionResponse(ApiBody):
    """E2-US1/US3 answer: the full definition."""

    metric_id: str
    name: str
    description: str | None
    data_type: DataType
    metric_type: MetricType
    unit: str | None
    min_value: float | None
    max_value: float | None
    retention_days: int
    aggregation_interval: int
    tags: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str


class MetricDefinitionList(ApiBody):
    """E2-US2 answer: a page of definitions, the total matching, and the filters used."""

    metrics: list[MetricDefinitionResponse]
    count: int
    total: int
    limit: int
    offset: int
    filters: dict[str, str]


class MetricDeletedResponse(ApiBody):
    """E2-US4 answer."""

    success: bool
    message: str
    name: str
    metric_id: str
