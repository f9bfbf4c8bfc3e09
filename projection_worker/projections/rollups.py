"""Read model: numeric rollups per (device, metric) and minute / hour, recomputed for touched buckets.

Recomputing from raw points (rather than adding the new points) keeps rollups exact when a point
is overwritten by a later upsert or arrives late: the SQL lives in telemetry.refresh_rollups.
"""

from typing import Any

from psycopg import AsyncCursor

from telemetry_core.topology import ROLLUP_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import points_stored_decoder
from telemetry_schemas.notices import PointsStored

NAME = "rollups"
SPEC: ConsumerSpec = ROLLUP_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.rollup_minute", "telemetry.rollup_hour")

_REFRESH = "SELECT telemetry.refresh_rollups(%s::text[], %s::text[], %s::timestamptz[])"
# Larger batches coalesce more (a minute touched by many notices is recomputed once per batch), but
# one call must stay well inside the statement timeout: buckets go to PostgreSQL in chunks.
BATCH = 512
CHUNK = 20_000


def decode(data: bytes) -> PointsStored:
    """Decode a stored notice."""
    return points_stored_decoder.decode(data)


async def apply(cur: AsyncCursor[Any], messages: list[PointsStored]) -> None:
    """Recompute every minute (and its hour) that the notices touched: each bucket once, in one call."""
    touched: set[tuple[str, str, Any]] = set()
    for notice in messages:
        for metric in notice.metrics:
            touched.update((notice.device_id, metric.metric_name, minute) for minute in metric.minutes)
    if not touched:
        return
    ordered = sorted(touched)
    for start in range(0, len(ordered), CHUNK):
        devices, metrics, minutes = zip(*ordered[start : start + CHUNK], strict=True)
        await cur.execute(_REFRESH, (list(devices), list(metrics), list(minutes)))
