"""A connection pool whose callers queue on a semaphore, not in psycopg_pool's own wait queue.

psycopg_pool hands a returned connection to a waiting caller through a per-caller condition awaited under
``asyncio.wait_for`` (a task per wait on Python 3.11). At 50 concurrent requests over a 10-connection pool most
requests wait, and that hand-over is CPU the gateway spends per query: 0.92x the calling process's CPU per
one-series query at 50 concurrent callers with the gate (199 → 184 µs; 0.92-0.99x over three runs;
docs/benchmarks-pool.md, ``python -m tests.bench.pool_gate``). Here at most ``max_size`` callers are inside the pool at
once, so the pool always has or opens a connection for them; the rest wait on an ``asyncio.Semaphore`` (a future
each), bounded by the same timeout. A wait that times out raises ``PoolTimeout`` as the pool does, so callers and
the gateway's error mapping (503 busy when every connection is in use, gateway/errors.py) see no difference.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from time import monotonic
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout


class GatedPool(AsyncConnectionPool):
    """``AsyncConnectionPool`` with a semaphore of ``max_size`` permits in front of ``connection()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(self.max_size)

    async def _admit(self, wait: float | None) -> float:
        """Take a permit, waiting at most ``wait`` s (the pool's timeout by default); return what is left of it."""
        wait_s = self.timeout if wait is None else wait
        if not self._gate.locked():
            await self._gate.acquire()  # a free permit: taken without suspending
            return wait_s
        deadline = monotonic() + wait_s
        try:
            async with asyncio.timeout(wait_s):
                await self._gate.acquire()
        except TimeoutError:
            raise PoolTimeout(f"couldn't get a connection after {wait_s:.2f} sec") from None
        return max(deadline - monotonic(), 0.0)

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg_pool's signature, which every caller uses
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection for the block, waiting at most ``timeout`` (the pool's) for a permit and a connection."""
        wait_s = await self._admit(timeout)
        try:
            async with self._lend(wait_s) as conn:
                yield conn
        finally:
            self._gate.release()

    def _lend(self, wait_s: float) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """How a permit holder gets its connection: psycopg_pool's own checkout (LeanPool keeps connections)."""
        return super().connection(timeout=wait_s)


class LeanPool(GatedPool):
    """An autocommit pool (the gateway's reads) whose connections stay checked out between blocks.

    Even with a connection free, psycopg_pool's checkout and return (its lock, stats, the reset check, ``async with
    conn``) cost CPU on every query: with this class 0.83x the plain pool's CPU per query at 50 concurrent callers
    (199 → 164 µs; 0.83-0.90x over three runs; GatedPool alone 0.92x; docs/benchmarks-pool.md). Here a block's
    connection, when it comes back healthy and idle (no transaction open, not past the pool's max_lifetime), goes on
    a list of this pool's own and serves the next block; anything else (an error in the block, a broken or expired
    connection, a transaction left open) goes back to psycopg_pool, which rolls back, replaces or closes it as
    before. ``get_stats`` counts the kept connections as available, so /health/detailed and the 503 "busy" check
    (pool_exhausted) read the same as with the plain pool. Only for autocommit connections: a block that did not
    open a transaction has nothing to commit, so keeping the connection skips no commit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: list[AsyncConnection[Any]] = []

    @asynccontextmanager
    async def _lend(self, wait_s: float) -> AsyncIterator[AsyncConnection[Any]]:
        """A kept connection if there is one, else one from the pool; kept again afterwards when reusable."""
        conn = self._kept.pop() if self._kept else await self.getconn(timeout=wait_s)
        try:
            yield conn
        except BaseException:
            await self.putconn(conn)  # psycopg_pool rolls back, or replaces a broken connection
            raise
        if self._reusable(conn):
            self._kept.append(conn)
        else:
            await self.putconn(conn)

    def _reusable(self, conn: AsyncConnection[Any]) -> bool:
        return (
            not self.closed
            and not conn.closed
            and conn.pgconn.status == ConnStatus.OK
            and conn.pgconn.transaction_status == TransactionStatus.IDLE
            # psycopg_pool's mark of the connection's max_lifetime: past it, the pool replaces the connection.
            and getattr(conn, "_expire_at", 0.0) > monotonic()
        )

    def get_stats(self) -> dict[str, int]:
        """psycopg_pool's stats, with the connections kept here counted as available (they are)."""
        stats = super().get_stats()
        stats["pool_available"] = stats.get("pool_available", 0) + len(self._kept)
        return stats

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - psycopg_pool's signature
        """Hand the kept connections back, then close the pool (which closes them)."""
        kept, self._kept = self._kept, []
        for conn in kept:
            await self.putconn(conn)
        await super().close(timeout)
