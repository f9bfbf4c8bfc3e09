"""A pool whose connection attempts gave up keeps trying: a caller waiting for a connection gets one within seconds
of PostgreSQL answering again, not after its whole timeout (shared/telemetry_core/pg_pool.py, RECONNECT_TRY_S).

The outage is a TcpCut relay between the pool and the suite's PostgreSQL (every connection dropped, new ones
refused), so the server itself and the other tests carry on.
"""

import asyncio
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from telemetry_core import pg_pool
from telemetry_core.settings import Settings
from tests.integration.runtime_support import until
from tests.support.tcp_cut import TcpCut


async def test_a_waiting_caller_gets_a_connection_soon_after_postgres_is_back(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_pool, "RECONNECT_TRY_S", 0.5)  # give up sooner, so the test sees gives-ups quickly
    assert settings.database_url
    cut = TcpCut(settings.database_url)
    await cut.start()
    parts = urlsplit(settings.database_url)
    url = parts._replace(
        netloc=parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{cut.port}")
    ).geturl()
    pool = pg_pool.make_pool(url, min_size=1, max_size=2, timeout_s=30.0)  # the workers' 30 s wait
    await pool.open(wait=True)
    try:
        cut.cut()
        with pytest.raises(psycopg.OperationalError):  # the pooled connection is gone: the pool replaces it
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        # Every attempt to replace it fails, and the pool gives up on it (psycopg_pool's reconnect_timeout).
        await until(
            lambda: pool.get_stats().get("pool_size", 0) == 0, timeout=10, what="the pool to give up reconnecting"
        )

        async def wait_for_a_connection() -> float:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            return time.monotonic()

        waiter = asyncio.create_task(wait_for_a_connection())
        # The waiter grows the pool by one attempt, which gives up too while PostgreSQL is still away.
        await until(lambda: pool.get_stats().get("connections_errors", 0) >= 2, timeout=10, what="failed attempts")
        await asyncio.sleep(1.5)  # past a give-up: without a new attempt after it, nobody would connect
        assert not waiter.done()
        cut.restore()
        restored = time.monotonic()
        answered = await asyncio.wait_for(waiter, 10)
        # Attempts are never more than RECONNECT_PAUSE_S + RECONNECT_TRY_S apart; 30 s (the caller's timeout)
        # is what a pool that stopped trying would take.
        assert answered - restored < pg_pool.RECONNECT_PAUSE_S + 0.5 + 2.0
    finally:
        await pool.close()
        await cut.stop()
