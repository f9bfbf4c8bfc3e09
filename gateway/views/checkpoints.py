"""The gateway's one read of a projection checkpoint: how far a read model has applied a stream."""

from psycopg_pool import AsyncConnectionPool

_CHECKPOINT = "SELECT last_seq FROM telemetry.projection_checkpoints WHERE projection = %s AND stream = %s"


async def applied_up_to(pool: AsyncConnectionPool, projection: str, stream: str) -> int:
    """The last ``stream`` sequence ``projection`` has applied (0 before its first)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_CHECKPOINT, (projection, stream), prepare=True)
        row = await cur.fetchone()
    return 0 if row is None else int(row[0])
