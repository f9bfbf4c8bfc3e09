"""Wait until a PostgreSQL backend is blocked on a lock: how a test forces the interleaving of two transactions."""

import asyncio
import time

from psycopg_pool import AsyncConnectionPool


async def waiting_on_lock(pool: AsyncConnectionPool, pid: int, what: str, deadline_s: float = 30.0) -> None:
    """Return once backend ``pid`` waits on a lock (pg_stat_activity); fail with ``what`` at the deadline."""
    deadline = time.monotonic() + deadline_s
    async with pool.connection() as conn:
        while True:
            cur = await conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = await cur.fetchone()
            if row is not None and row[0] == "Lock":
                return
            assert time.monotonic() < deadline, f"{what} never waited on a lock"
            await asyncio.sleep(0.02)
