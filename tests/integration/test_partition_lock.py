"""The alert partition's lock: exclusive, held on its own connection, and given up when that connection drops."""

import asyncio

import psycopg
import structlog

from alert_worker.partition_lock import PartitionLock, hold_partition
from telemetry_core.settings import Settings
from tests.support.ids import unique

log = structlog.get_logger()


async def _terminate(database_url: str, lock: PartitionLock) -> bool:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_terminate_backend(%s)", (lock.backend_pid,))
        return bool((await cur.fetchone() or [False])[0])


async def test_a_dropped_lock_connection_stops_the_owner_and_the_standby_takes_over(settings: Settings) -> None:
    assert settings.database_url
    consumer = unique("alerts")
    owner_stop, standby_stop = asyncio.Event(), asyncio.Event()
    owner = await hold_partition(settings.database_url, consumer, owner_stop, log)
    assert owner is not None
    standby = PartitionLock(settings.database_url, consumer, log, poll_s=0.1)
    taking = asyncio.create_task(standby.acquire(standby_stop))
    try:
        await asyncio.sleep(0.5)
        assert not taking.done()  # exclusive: the standby waits while the owner's session holds the lock
        assert await _terminate(settings.database_url, owner)
        await asyncio.wait_for(owner.lost.wait(), 5)
        assert owner_stop.is_set()  # the engine's stop event: it stops evaluating
        assert await asyncio.wait_for(taking, 5) is True
    finally:
        taking.cancel()
        await owner.release()
        await standby.release()


async def test_a_standby_stops_waiting_on_the_stop_signal(settings: Settings) -> None:
    assert settings.database_url
    consumer = unique("alerts")
    owner = await hold_partition(settings.database_url, consumer, asyncio.Event(), log)
    assert owner is not None
    stop = asyncio.Event()
    waiting = asyncio.create_task(hold_partition(settings.database_url, consumer, stop, log))
    try:
        await asyncio.sleep(0.3)
        stop.set()
        assert await asyncio.wait_for(waiting, 2) is None
        assert not owner.lost.is_set()  # the owner is unaffected
    finally:
        await owner.release()


async def test_release_frees_the_partition(settings: Settings) -> None:
    assert settings.database_url
    consumer = unique("alerts")
    first = await hold_partition(settings.database_url, consumer, asyncio.Event(), log)
    assert first is not None
    await first.release()
    second = await asyncio.wait_for(hold_partition(settings.database_url, consumer, asyncio.Event(), log), 2)
    assert second is not None
    assert not first.lost.is_set()  # a release is not a loss
    await second.release()
