"""The rollups projection: a batch sent to PostgreSQL in several chunks (one transaction) is exact.

Regression: refresh_rollups called twice in one transaction re-inserted the first call's hours
(duplicate key on rollup_hour), so every batch touching more than CHUNK minutes failed.
"""

from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from projection_worker.projections import rollups
from telemetry_schemas.notices import MetricStored, PointsStored
from telemetry_schemas.values import Point
from tests.support.ids import unique

HOUR = datetime(2031, 5, 6, 7, 0, tzinfo=UTC)


async def test_one_hour_split_across_chunks_is_recomputed_exactly(
    pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    device, metric = unique("dev"), unique("m")
    minutes = [HOUR + timedelta(minutes=i) for i in range(6)]
    rows = RowSet()
    for i, minute in enumerate(minutes):
        rows.add(device, Point(timestamp=minute + timedelta(seconds=5), metric_name=metric, value=float(i + 1)), 1)
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        await write_rows(conn, rows.rows())
    latest = Point(timestamp=minutes[-1], metric_name=metric, value=6.0)
    stored = MetricStored(metric_name=metric, count=6, first_time=minutes[0], last_time=minutes[-1], latest=latest,
                          minutes=minutes)  # fmt: skip
    notice = PointsStored(device_id=device, points_seq=1, stored_at=HOUR, metrics=[stored])
    monkeypatch.setattr(rollups, "CHUNK", 2)  # 6 minutes of one hour -> 3 calls in one transaction
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await rollups.apply(cur, [[notice]])
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count, sum, min, max FROM telemetry.rollup_hour WHERE device_id = %s AND metric_name = %s",
            (device, metric),
        )
        assert await cur.fetchall() == [(6, 21.0, 1.0, 6.0)]
        cur = await conn.execute(
            "SELECT count(*) FROM telemetry.rollup_minute WHERE device_id = %s AND metric_name = %s", (device, metric)
        )
        assert await cur.fetchone() == (6,)
