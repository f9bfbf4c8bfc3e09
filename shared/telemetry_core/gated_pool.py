"""A connection pool whose callers queue on a semaphore, not in psycopg_pool's own wait queue.

psycopg_pool hands a returned connection to a waiting caller through a per-caller condition awaited under
``asyncio.wait_for`` (a task per wait on Python 3.11). At 50 concurrent requests over a 10-connection pool most
requests wait, and that hand-over is CPU the gateway spends per query: with this class, 0.92x the calling process's
CPU per one-series query at 50 concurrent callers (247 → 227 µs; median of six runs 0.915x; docs/benchmarks-pool.md,
``python -m tests.bench.pool_gate``). Here at most ``max_size`` callers are inside the pool at
once, so the pool always has or opens a connection for them; the rest wait on an ``asyncio.Semaphore`` (a future
each), bounded by the same timeout. A wait that times out raises ``PoolTimeout`` as the pool does, so callers and
the gateway's error mapping (503 busy when every connection is in use, gateway/errors.py) see no difference.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import monotonic
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout


class GatedPool(AsyncConnectionPool):
    """``AsyncConnectionPool`` with a semaphore of ``max_size`` permits in front of ``connection()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(self.max_size)

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg_pool's signature, which every caller uses
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection for the block, waiting at most ``timeout`` (the pool's) for a permit and a connection."""
        wait_s = self.timeout if timeout is None else timeout
        if self._gate.locked():
            deadline = monotonic() + wait_s
            try:
                async with asyncio.timeout(wait_s):
                    await self._gate.acquire()
            except TimeoutError:
                raise PoolTimeout(f"couldn't get a connection after {wait_s:.2f} sec") from None
            wait_s = max(deadline - monotonic(), 0.0)
        else:
            await self._gate.acquire()  # a free permit: taken without suspending
        try:
            async with super().connection(timeout=wait_s) as conn:
                yield conn
        finally:
            self._gate.release()
