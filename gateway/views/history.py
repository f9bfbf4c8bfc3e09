"""Raw points over a time range, from the points table."""

from datetime import datetime

from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from telemetry_core.value_columns import from_columns
from telemetry_schemas.api.queries import DataPoint

# Half-open range [start, end). Tag filters are containment: every given tag must match. The device and tag
# conditions are in the statement only when the query has them (no `%(x)s IS NULL OR …` generic plans).
_RAW = """
SELECT device_id, metric_name, time, value_type, value_num, value_text, value_bool, value_json, unit, tags, metadata
FROM telemetry.points
WHERE metric_name = ANY(%(metrics)s) AND time >= %(start)s AND time < %(end)s{devices}{tags}
ORDER BY time, device_id, metric_name
LIMIT %(limit)s OFFSET %(offset)s
"""
_DEVICES = "\n  AND device_id = ANY(%(devices)s)"
_TAGS = "\n  AND tags @> %(tags)s::jsonb"


def raw_statement(devices: bool, tags: bool) -> sql.Composed:
    """The raw-points statement for this filter."""
    return sql.SQL(_RAW).format(devices=sql.SQL(_DEVICES if devices else ""), tags=sql.SQL(_TAGS if tags else ""))


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
        cur = await conn.execute(raw_statement(devices is not None, bool(tags)), params)
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
