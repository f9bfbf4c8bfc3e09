"""Migration 0018: write_points_stage() inserts fresh points without ON CONFLICT, and falls back to the upsert.

A batch whose keys are all new takes a plain INSERT (no speculative insertion per row); a batch holding any
existing key (an overwrite, a late duplicate, a redelivery, a concurrent writer of the same key that committed
first) rolls that insert back and takes 0013's upsert. Each test checks which path ran (the session setting
telemetry.write_path the function sets) and that what is stored, returned and rolled up is what the upsert
alone gives: later stream sequence wins, rollups equal raw, counts of inserted points exclude overwrites.
"""

import asyncio
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ingest_worker.rows import RowSet
from ingest_worker.writer import Inserted, PartitionCache, write_rows
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.pg_locks import waiting_on_lock
from tests.support.read_models import rollup_mismatches

T0 = datetime(2031, 9, 10, 11, 59, tzinfo=UTC)  # a minute before an hour boundary


def batch(device: str, seq: int, points: list[tuple[int, object]]) -> RowSet:
    """(second offset from T0, value) per point of metric "m", all from POINTS message ``seq``."""
    rows = RowSet()
    rows.add_points(
        device, [Point(timestamp=T0 + timedelta(seconds=s), metric_name="m", value=v) for s, v in points], seq
    )
    return rows


async def write_on(conn: AsyncConnection, rows: RowSet) -> tuple[Inserted, str]:
    """Write through the worker's path; return what it reported and which path the function took."""
    await PartitionCache().ensure(conn, rows.days())
    inserted = {key: sorted(hours) for key, hours in (await write_rows(conn, rows.rows())).items()}  # any order
    cur = await conn.execute("SELECT current_setting('telemetry.write_path')")
    row = await cur.fetchone()
    await conn.commit()  # the next write_rows must open a transaction of its own (its stage is emptied on commit)
    assert row is not None
    return inserted, row[0]


async def stored(pool: AsyncConnectionPool, device: str) -> list[tuple[object, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT time, value_num, value_text, src_seq, first_seq, rewritten FROM telemetry.points "
            "WHERE device_id = %s ORDER BY time",
            (device,),
        )
        return await cur.fetchall()


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_fresh_points_take_the_plain_insert_and_existing_keys_the_upsert(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    async with pool.connection() as conn:
        inserted, path = await write_on(conn, batch(device, 5, [(0, 1.0), (30, 2.0), (90, "x")]))
        assert path == "insert"
        hour = T0.replace(minute=0)
        assert inserted == {(5, "m"): [(hour, 2), (hour + timedelta(hours=1), 1)]}
        # One existing key among new ones (a later message overwrites 2.0): the whole batch takes the upsert,
        # nothing of the rolled-back plain insert stays behind.
        inserted, path = await write_on(conn, batch(device, 6, [(30, 7.0), (45, 3.0), (100, 4.0)]))
        assert path == "upsert"
        assert inserted == {(6, "m"): [(hour, 1), (hour + timedelta(hours=1), 1)]}  # the overwrite is not new
        # An older message committing late: loses its existing key, adds its new one.
        inserted, path = await write_on(conn, batch(device, 4, [(0, 100.0), (50, 5.0)]))
        assert path == "upsert"
        # And fresh points again: the plain insert.
        _, path = await write_on(conn, batch(device, 7, [(110, 6.0)]))
        assert path == "insert"
    assert await stored(pool, device) == [
        (at(0), 1.0, None, 5, 5, False),
        (at(30), 7.0, None, 6, 5, True),
        (at(45), 3.0, None, 6, 6, False),
        (at(50), 5.0, None, 4, 4, False),
        (at(90), None, "x", 5, 5, False),
        (at(100), 4.0, None, 6, 6, False),
        (at(110), 6.0, None, 7, 7, False),
    ]
    assert rollup_mismatches(str(pool.conninfo), [device]) == []


async def test_a_redelivered_batch_takes_the_upsert_and_counts_once(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    points = [(s, float(s)) for s in range(0, 120, 4)]
    async with pool.connection() as conn:
        first, path = await write_on(conn, batch(device, 3, points))
        assert path == "insert"
        again, path = await write_on(conn, batch(device, 3, points))  # the ack was lost: same message again
        assert path == "upsert"
    # Still "inserted by message 3" (first_seq = src_seq): the stats read model counts them once, from either.
    assert again == first
    assert rollup_mismatches(str(pool.conninfo), [device]) == []
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT sum(count) FROM telemetry.rollup_hour WHERE device_id = %s", (device,))
        assert await cur.fetchone() == (len(points),)


async def test_a_concurrent_insert_of_the_same_key_sends_the_waiting_writer_to_the_upsert(
    pool: AsyncConnectionPool,
) -> None:
    # Both batches are fresh when they start. The newer message's transaction inserts first and stays open;
    # the older one's plain insert waits on that key, then fails (unique_violation) once the newer commits,
    # and its upsert must not override the newer value (later stream sequence wins).
    device = unique("dev")
    newer, older = batch(device, 20, [(10, 2.0), (20, 3.0)]), batch(device, 19, [(5, 9.0), (10, 1.0)])
    async with pool.connection() as first, pool.connection() as second:
        await PartitionCache().ensure(first, newer.days())
        pid_row = await (await second.execute("SELECT pg_backend_pid()")).fetchone()
        await second.commit()
        assert pid_row is not None
        async with first.transaction():
            await write_rows(first, newer.rows())  # a savepoint inside the open transaction: not committed yet
            waiting = asyncio.create_task(write_on(second, older))
            await waiting_on_lock(pool, pid_row[0], "the second writer")
        inserted, path = await waiting
    assert path == "upsert"
    assert inserted == {(19, "m"): [(T0.replace(minute=0), 1)]}  # only its point at 5 s is new
    assert [(r[0], r[1], r[3]) for r in await stored(pool, device)] == [
        (at(5), 9.0, 19),
        (at(10), 2.0, 20),
        (at(20), 3.0, 20),
    ]
    assert rollup_mismatches(str(pool.conninfo), [device]) == []
