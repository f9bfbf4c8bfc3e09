"""Bodies of the E1 ingestion endpoints."""

from typing import Literal

import msgspec

from telemetry_schemas.base import ApiBody
from telemetry_schemas.codecs import PointError
from telemetry_schemas.fields import BatchId

MAX_BATCH_POINTS = 1000


class BatchRequest(ApiBody):
    """E1-US2 body. ``data_points`` stay raw so each is validated alone (partial success)."""

    data_points: list[msgspec.Raw]
    batch_id: BatchId | None = None
    # Informational: the body's compression is read from the Content-Encoding header.
    compression: Literal["gzip", "zstd", "lz4"] | None = None


class SingleIngestResponse(ApiBody):
    """E1-US1 answer."""

    success: bool
    message: str
    device_id: str
    metric_name: str


class BatchIngestResponse(ApiBody):
    """E1-US2 answer: counts and one error per rejected point (index, field, error)."""

    success: bool
    ingested_count: int
    failed_count: int
    total_count: int
    errors: list[PointError]
    batch_id: str | None = None
    detail: str | None = None


class DeviceResult(ApiBody):
    """One device's part of a bulk answer."""

    success: bool
    ingested_count: int
    failed_count: int
    total_count: int
    errors: list[PointError]
    detail: str | None = None


class BulkIngestResponse(ApiBody):
    """E1-US3 answer: totals plus per-device results keyed by device id."""

    success: bool
    total_devices: int
    successful_devices: int
    failed_devices: int
    ingested_count: int
    failed_count: int
    total_count: int
    results: dict[str, DeviceResult]
    # Set when no point was stored (the 422 answer), so every error answer carries a detail.
    detail: str | None = None
