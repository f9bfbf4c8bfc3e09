"""The metric names a device has reported, from the latest_values read model."""

from psycopg_pool import AsyncConnectionPool

_METRICS = "SELECT metric_name FROM telemetry.latest_values WHERE device_id = %s ORDER BY metric_name"


async def device_metrics(pool: AsyncConnectionPool, device_id: str) -> list[str]:
    """Sorted unique metric names; empty when the device has no data."""
    async with pool.connection() as conn:
        cur = await conn.execute(_METRICS, (device_id,), prepare=True)
        return [row[0] for row in await cur.fetchall()]
