"""At most N heavy queries at once per gateway; the rest queue briefly instead of exhausting the pool.

A query that reads raw points across a range (an aggregation the rollups cannot answer, e.g. a week of every
device) holds a pooled connection for tens or hundreds of milliseconds. Sixteen of them at once took every
connection and the pool's own wait turned the rest, and every cheap query behind them, into 503s. Here they
wait their turn (up to ``wait_s``) on a semaphore sized below the pool, so cheap queries always find a
connection; only a wait past ``wait_s`` answers 503 busy with Retry-After.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.errors import ServiceBusy
from gateway.metrics import OVERLOAD_REFUSALS


def heavy_concurrency(configured: int, pool_max: int) -> int:
    """The configured limit, or half the pool (at least 1) when 0."""
    return configured if configured > 0 else max(1, pool_max // 2)


class HeavyQueries:
    """A semaphore with a bounded wait; ``slot(heavy=False)`` passes straight through."""

    def __init__(self, concurrency: int, wait_s: float) -> None:
        self.concurrency = concurrency
        self.wait_s = wait_s
        self._sem = asyncio.Semaphore(concurrency)
        self.running = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self, *, heavy: bool = True) -> AsyncIterator[None]:
        """Hold one of the slots for the body (when ``heavy``), or raise ServiceBusy after ``wait_s``."""
        if not heavy:
            yield
            return
        self.waiting += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self._sem.acquire()
        except TimeoutError:
            OVERLOAD_REFUSALS.labels("heavy_queue").inc()
            raise ServiceBusy(
                f"the service is busy: {self.concurrency} heavy queries (aggregations over raw points) are running "
                f"and this one waited {self.wait_s:g}s for its turn; retry shortly, or ask for an interval the "
                "rollups serve (whole minutes or hours)",
                retry_after_s=1,
            ) from None
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._sem.release()

    def figures(self) -> dict[str, int | float]:
        """For /health/detailed."""
        return {"concurrency": self.concurrency, "running": self.running, "waiting": self.waiting,
                "max_wait_s": self.wait_s}  # fmt: skip
