"""Bodies of /health and /health/detailed."""

from typing import Any

from telemetry_schemas.base import ApiBody


class HealthResponse(ApiBody):
    """E6-US3 answer."""

    status: str
    service: str
    port: int
    version: str
    detail: str | None = None


class ComponentHealth(ApiBody):
    """One component of /health/detailed."""

    status: str
    detail: str | None = None
    metrics: dict[str, Any] = {}


class DetailedHealthResponse(ApiBody):
    """E6-US4 answer: data_ingestion, time_series_db, alert_engine, real_time_stream, and more."""

    status: str
    service: str
    port: int
    version: str
    components: dict[str, ComponentHealth]
    performance: dict[str, Any]
    # True while this gateway refuses ingestion because storage is too far behind (components.load says why).
    shedding_load: bool = False
