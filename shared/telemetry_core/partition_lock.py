"""Exclusive ownership by name (an alert partition, the read models): an advisory lock on a watched session.

The lock lives as long as the PostgreSQL session that took it. That session is this module's own
connection (never a pooled one that could be recycled or drop unnoticed), and a watcher pings it:
when the connection is gone the lock is gone too (a standby may already hold it), so the watcher
sets ``lost`` and the caller's stop event, and the engine stops evaluating.
"""

import asyncio
import os
import zlib
from contextlib import suppress

import psycopg
import structlog

_TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
_HELD = "SELECT 1"


def lock_key(consumer: str) -> int:
    """The advisory lock key of a partition's engine (its durable consumer name)."""
    return zlib.crc32(consumer.encode())


class PartitionLock:
    """Hold the partition lock; ``lost`` is set when the connection holding it drops."""

    def __init__(self, database_url: str, consumer: str, log: structlog.stdlib.BoundLogger, *,
                 poll_s: float = 0.5, watch_s: float = 1.0) -> None:  # fmt: skip
        self.database_url, self.consumer, self.log = database_url, consumer, log
        self.poll_s, self.watch_s = poll_s, watch_s
        self.lost = asyncio.Event()
        self._conn: psycopg.AsyncConnection | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def application_name(self) -> str:
        """How the lock's session shows in pg_stat_activity: which process holds which partition."""
        return f"telemetry-lock-{os.getpid()}-{self.consumer}"[:63]

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend holding (or waiting for) the lock."""
        return None if self._conn is None else self._conn.info.backend_pid

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Take the lock, waiting as a standby while another copy holds it; False if ``stop`` came first.

        Polls (rather than blocking in pg_advisory_lock) so that a stop signal ends the wait at once.
        """
        key, standby = lock_key(self.consumer), False
        while not stop.is_set():
            conn = self._conn = self._conn or await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, application_name=self.application_name
            )
            row = await (await conn.execute(_TRY_LOCK, (key,))).fetchone()
            if row is not None and row[0]:
                self.log.info("partition_lock_taken", consumer=self.consumer, after_standby=standby)
                return True
            if not standby:
                self.log.info("partition_taken_waiting_as_standby", consumer=self.consumer)
                standby = True
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)
        return False

    def watch(self, stop: asyncio.Event) -> None:
        """Ping the lock's connection every ``watch_s``; on failure set ``lost`` and ``stop``."""
        self._watcher = asyncio.create_task(self._watch(stop), name=f"partition-lock-{self.consumer}")

    async def _watch(self, stop: asyncio.Event) -> None:
        assert self._conn is not None
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._conn.execute(_HELD), self.watch_s * 5)
            except Exception as exc:  # the session, and so the lock, is gone (or unreachable: assume gone)
                self.log.error("partition_lock_lost", consumer=self.consumer, error=repr(exc))
                self.lost.set()
                stop.set()
                return
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.watch_s)

    async def release(self) -> None:
        """Stop watching and close the connection, which releases the lock."""
        if self._watcher is not None:
            self._watcher.cancel()
            with suppress(asyncio.CancelledError):
                await self._watcher
        if self._conn is not None:
            with suppress(Exception):
                await self._conn.close()
            self._conn = None


async def hold_partition(
    database_url: str, consumer: str, stop: asyncio.Event, log: structlog.stdlib.BoundLogger
) -> PartitionLock | None:
    """Take (waiting as standby) and watch the partition's lock; None when stopped before taking it."""
    lock = PartitionLock(database_url, consumer, log)
    try:
        if not await lock.acquire(stop):
            await lock.release()
            return None
    except BaseException:
        await lock.release()
        raise
    lock.watch(stop)
    return lock
