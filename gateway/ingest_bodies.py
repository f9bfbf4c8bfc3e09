"""The ingestion bodies as the OpenAPI document shows them.

The ingest routes decode raw bytes themselves (one msgspec pass, each point validated alone for
partial success), so their runtime types keep points raw; these types say what the points are.
"""

import msgspec

from telemetry_schemas.fields import BatchId, DeviceId
from telemetry_schemas.values import Point


class BatchBody(msgspec.Struct, kw_only=True):
    """E1-US2 body: 1..1000 points; each is validated alone."""

    data_points: list[Point]
    batch_id: BatchId | None = None
    compression: str | None = None


# E1-US3 body: device_id → that device's points (≤ 1000 each, ≤ 10,000 in all).
BulkBody = dict[DeviceId, list[Point]]
