"""Migration 0019: two transactions refreshing the same minute at once both succeed, and the rollup is exact.

Regression: refresh_rollups replaced a bucket by DELETE then INSERT. The second transaction's DELETE waited
for the first's row lock, found the row deleted once the first committed, deleted nothing, and its INSERT
failed with a duplicate key on rollup_minute_pkey (seen in the online-replay property test, where the live
rollups projection and its online replay refresh one minute together). Each test holds the first refresh
open until the second is seen waiting on a lock, so the interleaving is the racy one every time.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.pg_locks import waiting_on_lock
from tests.support.read_models import rollup_mismatches

MINUTE = datetime(2031, 11, 12, 13, 14, tzinfo=UTC)
REFRESH = "SELECT telemetry.refresh_rollups(%s::text[], %s::text[], %s::timestamptz[])"


@pytest.mark.parametrize("buckets_exist", [True, False], ids=["replacing-rows", "creating-rows"])
async def test_concurrent_refreshes_of_one_minute_both_commit_exactly(
    pool: AsyncConnectionPool, buckets_exist: bool
) -> None:
    device = unique("dev")
    rows = RowSet()
    values = [3.0, -1.5, 8.25, 8.25]
    rows.add_points(
        device, [Point(timestamp=MINUTE + timedelta(seconds=10 * i), metric_name="m", value=v) for i, v in enumerate(values)], 1
    )  # fmt: skip
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        await write_rows(conn, rows.rows())
        if not buckets_exist:  # both transactions then insert the same new keys
            for table in ("telemetry.rollup_minute", "telemetry.rollup_hour"):
                await conn.execute(f"DELETE FROM {table} WHERE device_id = %s", (device,))
            await conn.commit()
    args = ([device], ["m"], [MINUTE])
    async with pool.connection() as first, pool.connection() as second:
        pid_row = await (await second.execute("SELECT pg_backend_pid()")).fetchone()
        await second.commit()
        assert pid_row is not None
        async with first.transaction():
            await first.execute(REFRESH, args)
            waiting = asyncio.create_task(second.execute(REFRESH, args))
            await waiting_on_lock(pool, pid_row[0], "the second refresh")
        await waiting  # raised UniqueViolation before 0019
        await second.commit()
    assert rollup_mismatches(str(pool.conninfo), [device]) == []
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.count, m.sum, m.min, m.max, h.count FROM telemetry.rollup_minute m "
            "JOIN telemetry.rollup_hour h USING (device_id, metric_name) WHERE m.device_id = %s",
            (device,),
        )
        assert await cur.fetchall() == [(4, sum(values), -1.5, 8.25, 4)]


async def test_a_refresh_of_a_minute_without_numbers_leaves_no_empty_bucket(pool: AsyncConnectionPool) -> None:
    # The lock step creates a bucket that does not exist yet; the refresh must not leave it behind empty.
    device = unique("dev")
    rows = RowSet()
    rows.add_points(device, [Point(timestamp=MINUTE, metric_name="m", value="text")], 1)
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        await write_rows(conn, rows.rows())
        await conn.execute(REFRESH, ([device], ["m"], [MINUTE]))
        for table in ("telemetry.rollup_minute", "telemetry.rollup_hour"):
            cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE device_id = %s", (device,))
            assert await cur.fetchone() == (0,), table
