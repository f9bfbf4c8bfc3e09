"""The ingest worker's compaction loop (ingest_worker/sketch_compaction.py): it folds, it survives a failed round, it stops.

The fold itself is tested in test_hour_sketches_pending.py; here the loop around it, against the real database.
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from psycopg_pool import AsyncConnectionPool

from ingest_worker import sketch_compaction
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_schemas.values import Point
from tests.support.ids import unique

T0 = datetime(2031, 10, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def pool(own_pool: AsyncConnectionPool) -> AsyncConnectionPool:
    """These tests count and fold every pending sketch: a database of their own (tests/integration/conftest.py)."""
    return own_pool


async def pending(pool: AsyncConnectionPool, device: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM telemetry.rollup_hour_pending WHERE device_id = %s", (device,))
        row = await cur.fetchone()
    return int(row[0]) if row else -1


async def an_hour_with_enough_pending(pool: AsyncConnectionPool) -> str:
    """A device whose hour at T0 has MIN_PENDING pending sketches (one fresh batch, then that many more)."""
    device = unique("dev")
    for i in range(sketch_compaction.MIN_PENDING + 1):
        rows = RowSet()
        rows.add(device, Point(timestamp=T0 + timedelta(seconds=i), metric_name="m", value=float(i)), i + 1)
        async with pool.connection() as conn:
            await PartitionCache().ensure(conn, rows.days())
            await write_rows(conn, rows.rows())
    assert await pending(pool, device) == sketch_compaction.MIN_PENDING
    return device


async def until_folded(pool: AsyncConnectionPool, device: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while await pending(pool, device) != 0:
        assert time.monotonic() < deadline, "the loop did not fold the pending sketches in time"
        await asyncio.sleep(0.02)


async def test_the_loop_folds_pending_sketches_and_stops_on_the_signal(pool: AsyncConnectionPool) -> None:
    device = await an_hour_with_enough_pending(pool)
    stop = asyncio.Event()
    task = asyncio.create_task(sketch_compaction.compact_periodically(pool, 0.05, structlog.get_logger(), stop))
    await until_folded(pool, device)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_failed_round_is_logged_and_the_next_one_folds(
    pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = await an_hour_with_enough_pending(pool)
    real, calls = sketch_compaction.compact_hour_sketches, 0

    async def fails_once(p: AsyncConnectionPool, *args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database went away")
        return await real(p, *args, **kwargs)

    monkeypatch.setattr(sketch_compaction, "compact_hour_sketches", fails_once)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(sketch_compaction.compact_periodically(pool, 0.05, structlog.get_logger(), stop))
        await until_folded(pool, device)
        stop.set()
        await asyncio.wait_for(task, 5)
    failed = [e for e in logs if e["event"] == "hour_sketch_compaction_failed"]
    assert [e["error"] for e in failed] == ["the database went away"]
    assert calls >= 2
