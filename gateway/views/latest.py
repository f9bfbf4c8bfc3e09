"""Latest value of one (device, metric), from the latest_values read model."""

from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from telemetry_core.value_columns import from_columns
from telemetry_schemas.api.queries import LatestValueResponse

_LATEST = """
SELECT time, value_type, value_num, value_text, value_bool, value_json, unit, tags, metadata
FROM telemetry.latest_values
WHERE device_id = %s AND metric_name = %s AND time >= %s
"""


async def latest_value(
    pool: AsyncConnectionPool, device_id: str, metric_name: str, since: datetime
) -> LatestValueResponse | None:
    """The newest point at or after ``since``, or None."""
    async with pool.connection() as conn:
        cur = await conn.execute(_LATEST, (device_id, metric_name, since), prepare=True)
        row = await cur.fetchone()
    if row is None:
        return None
    time, kind, num, text, flag, obj, unit, tags, metadata = row
    return LatestValueResponse(
        device_id=device_id,
        metric_name=metric_name,
        value=from_columns(kind, num, text, flag, obj),
        unit=unit,
        timestamp=time,
        tags=tags or {},
        metadata=metadata or {},
    )
