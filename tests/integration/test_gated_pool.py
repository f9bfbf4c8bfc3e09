"""GatedPool (shared/telemetry_core/gated_pool.py): callers beyond the pool's size wait on its semaphore, never in
psycopg_pool's own queue; a wait past the timeout is the pool's PoolTimeout; a permit comes back on every exit."""

import asyncio

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from telemetry_core.gated_pool import GatedPool
from telemetry_core.pg_pool import make_pool, pool_exhausted
from telemetry_core.settings import Settings


async def _open(settings: Settings, size: int, timeout_s: float = 5.0) -> GatedPool:
    assert settings.database_url
    # min_size = max_size: every connection is there before the test, so none is waited for while opening.
    # A workers' pool (transactions): the gateway's autocommit pools are LeanPool (tests/integration/test_lean_pool.py).
    pool = make_pool(settings.database_url, min_size=size, max_size=size, timeout_s=timeout_s)
    assert type(pool) is GatedPool
    await pool.open(wait=True)
    return pool


async def test_callers_beyond_the_size_queue_on_the_gate_not_in_the_pool(settings: Settings) -> None:
    pool = await _open(settings, 2)
    inside = 0
    most_inside = 0
    try:

        async def one(i: int) -> int:
            nonlocal inside, most_inside
            async with pool.connection() as conn:
                inside += 1
                most_inside = max(most_inside, inside)
                row = await (await conn.execute("SELECT %s::int * 2, pg_sleep(0.005)", [i])).fetchone()
                inside -= 1
            assert row is not None
            return int(row[0])

        results = await asyncio.gather(*(one(i) for i in range(40)))
        stats = pool.get_stats()
    finally:
        await pool.close()
    assert results == [i * 2 for i in range(40)]
    assert most_inside == 2
    # psycopg_pool counts a request it could not serve at once as queued: the gate keeps that at zero.
    assert stats.get("requests_queued", 0) == 0, stats
    assert stats["requests_num"] >= 40


async def test_a_wait_past_the_timeout_is_pool_timeout_with_every_connection_in_use(settings: Settings) -> None:
    pool = await _open(settings, 2, timeout_s=0.2)
    release = asyncio.Event()
    both_held = asyncio.Barrier(3)

    async def hold() -> None:
        async with pool.connection():
            await both_held.wait()
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    try:
        async with asyncio.timeout(5):
            await both_held.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PoolTimeout):
            async with pool.connection():
                pass
        waited = loop.time() - started
        # What the gateway checks to answer 503 "busy" rather than "PostgreSQL is unavailable".
        assert pool_exhausted(pool)
        with pytest.raises(PoolTimeout):  # an explicit timeout wins over the pool's
            async with pool.connection(timeout=0.05):
                pass
    finally:
        release.set()
        await asyncio.gather(*holders)
    assert 0.15 <= waited < 2.0, waited
    async with pool.connection() as conn:  # both permits came back
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    await pool.close()


async def test_a_failing_block_and_a_cancelled_waiter_give_their_permits_back(settings: Settings) -> None:
    pool = await _open(settings, 2)
    try:
        for _ in range(5):  # more failures than permits: a permit kept by a failure would block the next round
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1 / 0::int")
        release = asyncio.Event()

        async def hold() -> None:
            async with pool.connection():
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(hold())  # waits at the gate
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await asyncio.gather(*holders)

        async def one() -> int:
            async with pool.connection(timeout=1.0) as conn:
                row = await (await conn.execute("SELECT 1, pg_sleep(0.05)")).fetchone()
                return 1 if row else 0

        # Both permits are free again: two blocks run side by side, not one after the other.
        assert await asyncio.gather(one(), one()) == [1, 1]
    finally:
        await pool.close()
