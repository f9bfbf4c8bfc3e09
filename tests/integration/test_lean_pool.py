"""LeanPool (shared/telemetry_core/gated_pool.py): an autocommit pool keeps a block's connection for the next block
when it comes back idle and healthy, and hands anything else back to psycopg_pool, as the plain pool would."""

import asyncio

import psycopg
import pytest

from telemetry_core.gated_pool import LeanPool
from telemetry_core.pg_pool import make_pool, pool_exhausted
from telemetry_core.settings import Settings


async def _open(settings: Settings, size: int) -> LeanPool:
    assert settings.database_url
    pool = make_pool(settings.database_url, min_size=size, max_size=size, timeout_s=5.0, autocommit=True)
    assert isinstance(pool, LeanPool)  # what the gateway's autocommit pools are
    await pool.open(wait=True)
    return pool


async def _pid(pool: LeanPool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(row[0])


async def test_connections_are_kept_between_blocks_and_counted_as_available(settings: Settings) -> None:
    pool = await _open(settings, 2)
    try:

        async def one(i: int) -> int:
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT %s::int + 1, pg_sleep(0.002)", [i])).fetchone()
            assert row is not None
            return int(row[0])

        assert await asyncio.gather(*(one(i) for i in range(40))) == [i + 1 for i in range(40)]
        stats = pool.get_stats()
        # Two checkouts from psycopg_pool in all (one per connection); the other 38 blocks reused them.
        assert stats["requests_num"] == 2, stats
        assert stats["pool_available"] == 2, stats  # kept, and free: not "busy"
        assert not pool_exhausted(pool)
        assert await _pid(pool) == await _pid(pool)  # one after the other: the same kept connection
    finally:
        await pool.close()


async def test_a_transaction_left_open_or_an_error_sends_the_connection_back_to_the_pool(settings: Settings) -> None:
    pool = await _open(settings, 1)
    try:
        async with pool.connection() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
        async with pool.connection() as conn:
            # psycopg_pool rolled the open transaction back when it got the connection: nothing of it remains.
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            row = await (await conn.execute("SELECT to_regclass('pg_temp.left_open') IS NULL")).fetchone()
            assert row == (True,)
        taken = pool.get_stats()["requests_num"]  # the second block's connection is kept now
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with pool.connection() as conn:  # the kept one: no checkout from psycopg_pool
                await conn.execute("SELECT 1 / 0::int")
        assert pool.get_stats()["requests_num"] == taken
        async with pool.connection() as conn:  # the failed block handed it back: taken from psycopg_pool again
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        assert pool.get_stats()["requests_num"] == taken + 1
    finally:
        await pool.close()


async def test_a_broken_kept_connection_fails_one_block_and_is_replaced(settings: Settings) -> None:
    assert settings.database_url
    pool = await _open(settings, 1)
    try:
        victim = await _pid(pool)
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", [victim])
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        # psycopg_pool threw the broken one away and connects anew.
        fresh = await asyncio.wait_for(_pid(pool), timeout=10)
        assert fresh != victim
    finally:
        await pool.close()


async def test_close_closes_the_kept_connections(settings: Settings) -> None:
    pool = await _open(settings, 2)
    kept = []
    for _ in range(2):
        async with pool.connection() as conn:
            kept.append(conn)
    await pool.close()
    assert all(conn.closed for conn in kept)
