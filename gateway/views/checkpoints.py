"""The gateway's one read of a projection checkpoint: how far a read model has applied a stream."""

from psycopg_pool import AsyncConnectionPool

from telemetry_core.checkpoints import read_checkpoint


async def applied_up_to(pool: AsyncConnectionPool, projection: str, stream: str) -> int:
    """The last ``stream`` sequence ``projection`` has applied (0 before its first)."""
    async with pool.connection() as conn:
        return await read_checkpoint(conn, projection, stream)
