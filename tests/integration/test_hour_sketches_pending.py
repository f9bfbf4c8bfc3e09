"""Hour sketches merged later (migration 0023): pending while the hour row exists, folded in by compaction.

A batch into an existing hour row appends its sketch to rollup_hour_pending instead of rebuilding the row's;
``compact_hour_sketches`` folds them in. Each test checks the mechanism itself (where a batch's sketch goes,
what compaction leaves) and that the hour, read as row + pending, equals a recompute from raw points at every
step: a compaction that merged without deleting (counted twice) or deleted without merging (lost) fails here.
"""

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from gateway.query_plan import Plan, Source
from gateway.views.aggregates import aggregate
from ingest_worker.rows import RowSet
from ingest_worker.sketch_compaction import compact_hour_sketches
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.metrics import SKETCHES_COMPACTED
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.read_models import rollup_mismatches

T0 = datetime(2031, 9, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def pool(own_pool: AsyncConnectionPool) -> AsyncConnectionPool:
    """These tests count and fold every pending sketch: a database of their own (tests/integration/conftest.py)."""
    return own_pool


async def write(pool: AsyncConnectionPool, rows: RowSet) -> None:
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        await write_rows(conn, rows.rows())


def batch(device: str, seq: int, seconds: range, value: Any = None) -> RowSet:
    """One point per second of ``seconds`` from T0 for metric m, from POINTS message ``seq``."""
    rows = RowSet()
    for s in seconds:
        v = float(s % 97) if value is None else value
        rows.add(device, Point(timestamp=T0 + timedelta(seconds=s), metric_name="m", value=v), seq)
    return rows


async def stored(pool: AsyncConnectionPool, device: str) -> tuple[dict[str, int], list[dict[str, int]]]:
    """The hour row's own sketch and the pending sketches of ``device``'s hour at T0."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT sketch FROM telemetry.rollup_hour WHERE device_id = %s AND bucket = %s",
                               (device, T0))
        ).fetchone()  # fmt: skip
        pending = await (
            await conn.execute("SELECT sketch FROM telemetry.rollup_hour_pending WHERE device_id = %s", (device,))
        ).fetchall()
    assert row is not None
    return row[0], [p[0] for p in pending]


def total(sketch: dict[str, int]) -> int:
    return sum(int(n) for n in sketch.values())


async def test_a_batch_into_an_existing_hour_is_pending_until_compacted(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    await write(pool, batch(device, 1, range(0, 60)))
    own, pending = await stored(pool, device)
    assert (total(own), pending) == (60, [])  # a fresh hour row takes its sketch at once: nothing to merge
    await write(pool, batch(device, 2, range(60, 100)))
    await write(pool, batch(device, 3, range(100, 110)))
    own, pending = await stored(pool, device)
    assert total(own) == 60 and sorted(total(p) for p in pending) == [10, 40]  # the row's sketch left as it was
    assert rollup_mismatches(str(pool.conninfo), [device]) == []  # row + pending = raw, before compaction

    before = SKETCHES_COMPACTED._value.get()
    assert await compact_hour_sketches(pool, min_pending=1) >= 1
    assert SKETCHES_COMPACTED._value.get() - before >= 1
    own, pending = await stored(pool, device)
    assert (total(own), pending) == (110, [])
    assert rollup_mismatches(str(pool.conninfo), [device]) == []


async def test_an_hour_is_folded_once_it_has_enough_pending_sketches_or_is_over(pool: AsyncConnectionPool) -> None:
    few, many = unique("dev"), unique("dev")
    for d, batches in ((few, 3), (many, 5)):
        for i in range(batches):
            await write(pool, batch(d, i + 1, range(i * 10, i * 10 + 10)))

    async def pending(device: str) -> int:
        return len((await stored(pool, device))[1])

    await compact_hour_sketches(pool, min_pending=4, closed_before=T0)  # T0's hour is not before T0: not over
    assert (await pending(few), await pending(many)) == (2, 0)
    assert rollup_mismatches(str(pool.conninfo), [few, many]) == []
    await compact_hour_sketches(pool, min_pending=4, closed_before=T0 + timedelta(hours=1))  # now over
    assert await pending(few) == 0
    assert rollup_mismatches(str(pool.conninfo), [few, many]) == []


async def test_compaction_takes_the_hours_in_chunks(pool: AsyncConnectionPool) -> None:
    devices = [unique("dev") for _ in range(5)]
    for d in devices:
        await write(pool, batch(d, 1, range(0, 3)))
        await write(pool, batch(d, 2, range(3, 6)))
    await compact_hour_sketches(pool, chunk=2, min_pending=1)  # 2 hours per transaction: until none is left
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM telemetry.rollup_hour_pending WHERE device_id = ANY(%s)",
                                 (devices,))  # fmt: skip
        assert await cur.fetchone() == (0,)
    assert rollup_mismatches(str(pool.conninfo), devices) == []


async def test_an_overwrite_rebuilds_the_hour_and_drops_its_pending_sketches(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    await write(pool, batch(device, 1, range(0, 30)))
    await write(pool, batch(device, 2, range(30, 40)))
    assert len((await stored(pool, device))[1]) == 1
    await write(pool, batch(device, 3, range(35, 45), value=500.0))  # 5 overwrites: refresh_rollups rebuilds the hour
    own, pending = await stored(pool, device)
    assert (total(own), pending) == (45, [])
    assert rollup_mismatches(str(pool.conninfo), [device]) == []


async def test_a_percentile_reads_the_pending_sketches(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    await write(pool, batch(device, 1, range(0, 10), value=1.0))
    await write(pool, batch(device, 2, range(10, 100), value=1000.0))  # pending: the median is among these

    async def median() -> tuple[float | None, int]:
        (bucket,) = await aggregate(
            pool, Plan(Source.HOUR, 0.02), aggregation="median", interval=3600, metrics=["m"], devices=[device],
            start=T0, end=T0 + timedelta(hours=1),
        )  # fmt: skip
        return bucket.value, bucket.count

    before = await median()
    assert before[1] == 100 and before[0] is not None and abs(before[0] - 1000.0) / 1000.0 <= 0.02
    await compact_hour_sketches(pool, min_pending=1)
    assert await median() == before


async def test_compaction_beside_concurrent_writers_loses_and_doubles_nothing(pool: AsyncConnectionPool) -> None:
    # Writers of fresh points (pending sketches) and of overwrites (refresh_rollups rebuilds the hour and deletes
    # its pending sketches, after locking it) beside a compaction loop: every lock order meets every other.
    devices = [unique("dev") for _ in range(3)]
    rng = random.Random(2323)
    seqs = itertools.count(1)
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        for i in range(25):  # each batch: every device, a few new seconds of the same hour; every third overwrites
            rows, first = RowSet(), w * 1000 + i * 10
            seconds = range(first - 10 if i % 3 == 2 else first, first + rng.randrange(1, 10))
            seq = next(seqs)
            for d in devices:
                for s in seconds:
                    value = rng.randrange(0, 400) / 4  # sums exact in any order (the comparison is exact)
                    rows.add(d, Point(timestamp=T0 + timedelta(seconds=s), metric_name="m", value=value), seq)
            await write(pool, rows)

    async def compactor() -> int:
        rounds = 0
        while not stop.is_set():
            await compact_hour_sketches(pool, chunk=1, min_pending=1)
            rounds += 1
        return rounds

    task = asyncio.create_task(compactor())
    await asyncio.gather(*(writer(w) for w in range(3)))
    stop.set()
    assert await task > 1
    assert rollup_mismatches(str(pool.conninfo), devices) == []
    await compact_hour_sketches(pool, min_pending=1)
    assert rollup_mismatches(str(pool.conninfo), devices) == []
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM telemetry.rollup_hour_pending WHERE device_id = ANY(%s)",
                                 (devices,))  # fmt: skip
        assert await cur.fetchone() == (0,)
