"""Raw points over a time range, from the points table."""

from datetime import datetime

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from telemetry_core.value_columns import from_columns
from telemetry_schemas.api.queries import DataPoint

# Half-open range [start, end). Tag filters are containment: every given tag must match.
_RAW = """
SELECT device_id, metric_name, time, value_type, value_num, value_text, value_bool, value_json, unit, tags, metadata
FROM telemetry.points
WHERE metric_name = ANY(%(metrics)s)
  AND (%(devices)s::text[] IS NULL OR device_id = ANY(%(devices)s))
  AND time >= %(start)s AND time < %(end)s
  AND (%(tags)s::jsonb IS NULL OR tags @> %(tags)s::jsonb)
ORDER BY time, device_id, metric_name
LIMIT %(limit)s OFFSET %(offset)s
"""


async def raw_points(
    pool: AsyncConnectionPool,
    *,
    metrics: list[str],
    devices: list[str] | None,
    start: datetime,
    end: datetime,
    tags: dict[str, str] | None,
    limit: int,
    offset: int,
) -> list[DataPoint]:
    """Points in time order (then device, metric), each naming its device and metric."""
    params = {
        "metrics": metrics,
        "devices": devices,
        "start": start,
        "end": end,
        "tags": Jsonb(tags) if tags else None,
        "limit": limit,
        "offset": offset,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_RAW, params)
        rows = await cur.fetchall()
    return [
        DataPoint(
            timestamp=time,
            device_id=device_id,
            metric_name=metric_name,
            value=from_columns(kind, num, text, flag, obj),
            unit=unit,
            tags=tags_ or {},
            metadata=metadata or {},
        )
        for device_id, metric_name, time, kind, num, text, flag, obj, unit, tags_, metadata in rows
    ]
