"""Rollups merged in the ingest transaction (migration 0013) equal a recompute from raw points.

The additive path adds what a batch inserted; only minutes with an updated row are recomputed. Each
test writes through the worker's own path (RowSet → write_rows) and compares every rollup_minute and
rollup_hour row of its device with the same figures computed from telemetry.points: a merge that adds
a replayed batch twice, misses an overwrite, or keeps a point an older message lost to, fails here.
"""

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest_worker.notices import build_notice
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from projection_worker.projections import rollups
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.read_models import rollup_mismatches

T0 = datetime(2031, 7, 8, 9, 58, tzinfo=UTC)  # two minutes before an hour boundary: batches span two hours


async def assert_exact(pool: AsyncConnectionPool, device: str) -> None:
    """Every minute and hour rollup of ``device`` equals the raw points' figures, and no other rollup row exists."""
    # The comparison the cluster fault test makes too (tests/support/read_models.py), on a sync connection of its own.
    assert rollup_mismatches(str(pool.conninfo), [device]) == []


async def write(pool: AsyncConnectionPool, rows: RowSet) -> None:
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        await write_rows(conn, rows.rows())


def batch(device: str, seq: int, points: list[tuple[str, int, object]]) -> RowSet:
    """(metric, second offset from T0, value) per point, all from POINTS message ``seq``."""
    rows = RowSet()
    for metric, offset, value in points:
        rows.add(device, Point(timestamp=T0 + timedelta(seconds=offset), metric_name=metric, value=value), seq)
    return rows


async def test_a_batch_applied_twice_counts_once(pool: AsyncConnectionPool) -> None:
    # A JetStream redelivery after the commit (the ack was lost): the same message, same sequence, again.
    device = unique("dev")
    points = [("m", s, float(s % 7)) for s in range(0, 240, 5)]
    await write(pool, batch(device, 1, points))
    await assert_exact(pool, device)
    await write(pool, batch(device, 1, points))
    await assert_exact(pool, device)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT sum(count) FROM telemetry.rollup_hour WHERE device_id = %s", (device,))
        assert await cur.fetchone() == (len(points),)


async def test_overwrites_late_points_and_lost_races_stay_exact(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    await write(pool, batch(device, 10, [("m", 0, 5.0), ("m", 30, 1.0), ("m", 150, 2.0)]))
    # A later message overwrites 5.0 with a smaller number (min must drop back) and one with text.
    await write(pool, batch(device, 11, [("m", 0, 3.0), ("m", 150, "gone"), ("m", 31, 9.0)]))
    await assert_exact(pool, device)
    # An older message committing late loses to the stored rows but adds its new point.
    await write(pool, batch(device, 9, [("m", 0, 100.0), ("m", 60, 4.0)]))
    await assert_exact(pool, device)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count, sum, min, max FROM telemetry.rollup_minute WHERE device_id = %s ORDER BY bucket", (device,)
        )
        assert await cur.fetchall() == [(3, 13.0, 1.0, 9.0), (1, 4.0, 4.0, 4.0)]


async def test_random_batches_with_replays_overwrites_and_old_messages(pool: AsyncConnectionPool) -> None:
    # Property: whatever sequence of batches (replays, overwrites, older sequences, types), rollups == raw.
    rng = random.Random(1313)
    for _ in range(12):
        device, sent = unique("dev"), []
        for seq in rng.sample(range(1, 40), 6):
            points = [
                (rng.choice("ab"), rng.randrange(0, 300, 10), rng.choice([rng.randrange(-8, 9) / 2, "t", True]))
                for _ in range(rng.randrange(1, 25))
            ]
            sent.append((seq, points))
            await write(pool, batch(device, seq, points))
            if rng.random() < 0.3:  # redelivered, at once or after later messages
                again = rng.choice(sent)
                await write(pool, batch(device, again[0], again[1]))
        await assert_exact(pool, device)


async def test_concurrent_writers_to_the_same_minutes_stay_exact(pool: AsyncConnectionPool) -> None:
    # Several ingest transactions at once on one device's minutes, some overwriting each other's points:
    # the lock-then-recompute order must neither lose nor double a point.
    device = unique("dev")
    rng = random.Random(7)
    batches = [
        batch(device, seq, [("m", rng.randrange(0, 180, 3), float(rng.randrange(50))) for _ in range(60)])
        for seq in range(1, 13)
    ]
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, batches[0].days())
    for start in range(0, len(batches), 4):
        await asyncio.gather(*(write(pool, b) for b in batches[start : start + 4]))
    await assert_exact(pool, device)


@pytest.mark.parametrize("replayed", [False, True])
async def test_metric_hour_rollup_sums_every_device(pool: AsyncConnectionPool, replayed: bool) -> None:
    metric, devices = unique("m"), [unique("dev"), unique("dev")]
    notices = []
    for i, device in enumerate(devices):
        points = [
            Point(timestamp=T0 + timedelta(minutes=k), metric_name=metric, value=float(10 * i + k)) for k in range(4)
        ]
        rows = RowSet()
        for p in points:
            rows.add(device, p, i + 1)
        await write(pool, rows)
        notices.append(build_notice(device, i + 1, points, {}, rollups_applied=True))
    for _ in range(2 if replayed else 1):  # a recompute: applying the notices again changes nothing
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await rollups.apply(cur, [notices])
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT bucket, count, sum, min, max, devices FROM telemetry.rollup_metric_hour WHERE metric_name = %s "
            "ORDER BY bucket",
            (metric,),
        )
        # 09:58 and 09:59 in the first hour, 10:00 and 10:01 in the second, for values k and 10 + k.
        assert await cur.fetchall() == [
            (T0.replace(minute=0), 4, 0 + 1 + 10 + 11, 0.0, 11.0, 2),
            (T0.replace(minute=0) + timedelta(hours=1), 4, 2 + 3 + 12 + 13, 2.0, 13.0, 2),
        ]


async def test_sketches_are_what_jsonb_object_agg_builds(pool: AsyncConnectionPool) -> None:
    """Migration 0022 builds the merged sketches from text: the same jsonb, to the text, as jsonb_object_agg's.

    Values of every sketch key form: zero ('z'), below one (negative exponents, 'p-…'), negative ('n…'), large.
    """
    device = unique("dev")
    rng = random.Random(22)
    values = [0.0, 1e-12, -1e-12, 0.5, 0.001, -0.25, -3.0, 1.0, 7.5, 123456.789, -98765.4, 2**40]
    points = [("m", s, rng.choice(values) * rng.choice([1, 1, 3])) for s in range(0, 180)]
    await write(pool, batch(device, 1, points))
    async with pool.connection() as conn:
        for table, width in (("rollup_minute", "1 minute"), ("rollup_hour", "1 hour")):
            cur = await conn.execute(
                f"""SELECT r.bucket, r.sketch::text, (
                        SELECT jsonb_object_agg(q.k, q.n)::text FROM (
                            SELECT telemetry.dd_key(p.value_num) AS k, count(*) AS n FROM telemetry.points p
                            WHERE p.device_id = r.device_id AND p.metric_name = r.metric_name
                              AND date_bin('{width}', p.time, timestamptz 'epoch') = r.bucket
                            GROUP BY 1) q)
                    FROM telemetry.{table} r WHERE r.device_id = %s ORDER BY 1""",
                (device,),
            )
            rows = await cur.fetchall()
            assert rows and all(stored == built for _, stored, built in rows), (table, rows[:2])
            assert any(len(stored) > 20 for _, stored, _ in rows)  # several keys per sketch: not a trivial case
