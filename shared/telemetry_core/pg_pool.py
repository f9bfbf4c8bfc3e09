"""Async PostgreSQL pool with fail-fast start and bounded waits."""

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool


async def _configure(conn: AsyncConnection) -> None:
    # Every statement of ours names schema telemetry explicitly; the timeout bounds a stuck query.
    await conn.execute("SET statement_timeout = '30s'")
    await conn.commit()


def make_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 2.0
) -> AsyncConnectionPool:
    """Build (but do not open) a pool; ``timeout_s`` bounds how long a caller waits for a connection."""
    return AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        open=False,
        configure=_configure,
        kwargs={"autocommit": False, "connect_timeout": max(1, int(timeout_s))},
        reconnect_timeout=0,  # keep trying to reconnect forever while PostgreSQL is down
    )


async def close_pool(pool: AsyncConnectionPool, timeout_s: float = 1.0) -> None:
    """Close the pool, waiting at most ``timeout_s`` for its background workers (they may be reconnecting)."""
    await pool.close(timeout=timeout_s)
