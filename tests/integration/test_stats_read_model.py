"""The stats read model (device_stats + dead_letter_stats projections) and its views, on a database of its own.

A fresh database makes every service-wide figure exactly predictable. Points go through the real write
path (RowSet → write_rows), notices are built from what the upsert reported, the projections apply them.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from gateway.views import stats as stats_view
from gateway.views.stats import device_stats as read_device_stats
from gateway.views.stats import service_stats as read_service_stats
from projection_worker.projections import dead_letter_stats, device_stats
from telemetry_core.migrate import migrate
from telemetry_core.pg_pool import make_pool
from telemetry_schemas.dead_letter import DeadLetter
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.ingest_writes import store_messages
from tests.support.servers import Servers

NOW = datetime.now(UTC)


@pytest.fixture
async def fresh_pool(servers: Servers) -> AsyncIterator[AsyncConnectionPool]:
    name = unique("stats")
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # a generated identifier, not input
    url = make_conninfo(servers.database_url, dbname=name)
    migrate(url)
    pool = make_pool(url, max_size=2)
    await pool.open(wait=True)
    yield pool
    await pool.close()
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def pt(metric: str, ago: timedelta, value: float) -> Point:
    return Point(timestamp=NOW - ago, metric_name=metric, value=value)


async def store(pool: AsyncConnectionPool, messages: list[tuple[int, str, list[Point]]]) -> dict:
    """Write messages (seq, device, points) in one transaction as the ingest worker does; apply their notices."""
    inserted, notices = await store_messages(pool, messages)
    # JetStream accepted each message 50 ms before its commit (build_notice stamps stored_at).
    notices = [msgspec.structs.replace(n, accepted_at=n.stored_at - timedelta(milliseconds=50)) for n in notices]
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await device_stats.apply(cur, [notices])
    return inserted


MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


async def test_writer_reports_inserts_not_overwrites_and_a_redelivery_reports_its_own_inserts(
    fresh_pool: AsyncConnectionPool,
) -> None:
    hour = lambda ago: (NOW - ago).replace(minute=0, second=0, microsecond=0)  # noqa: E731
    first = await store(fresh_pool, [(1, "d1", [pt("t", 10 * MIN, 1.0), pt("t", 9 * MIN, 2.0)])])
    assert sum(n for _, n in first[(1, "t")]) == 2
    # seq 2 overwrites one point and adds one: only the new one is reported.
    second = await store(fresh_pool, [(2, "d1", [pt("t", 9 * MIN, 3.0), pt("t", 30 * HOUR, 4.0)])])
    assert second == {(2, "t"): [(hour(30 * HOUR), 1)]}
    # seq 1 again (crash before its notice): the row it still owns is reported as its insert, the
    # overwritten one is not (a newer message wrote it).
    again = await store(fresh_pool, [(1, "d1", [pt("t", 10 * MIN, 1.0), pt("t", 9 * MIN, 2.0)])])
    assert again == {(1, "t"): [(hour(10 * MIN), 1)]}


async def test_device_and_service_stats_are_exact_after_overwrites_and_late_points(
    fresh_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_view, "TABLE_BYTES_TTL_S", 0.0)  # the size is read again on every call here
    empty = await read_service_stats(fresh_pool)
    assert (empty.total_devices, empty.total_data_points, empty.points_per_second, empty.error_rate) == (0, 0, 0, 0)
    assert [h.points for h in empty.data_by_hour] == [0] * 24

    async with fresh_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO telemetry.metric_definitions (name, metric_id, data_type, metric_type, retention_days, "
            "aggregation_interval, created_at, updated_at, created_by) "
            "VALUES ('temp', 'm1', 'numeric', 'gauge', 30, 60, now(), now(), 'test')"
        )
        for device, ago in (("dA", HOUR), ("dA", 25 * HOUR), ("dB", 2 * HOUR)):
            await conn.execute(
                "INSERT INTO telemetry.alerts (alert_id, rule_id, rule_name, device_id, metric_name, level, status, "
                "kind, message, triggered_at) VALUES (%s, 'r', 'r', %s, 'temp', 'warning', 'active', 'threshold', "
                "'m', %s)",
                (unique("alt"), device, NOW - ago),
            )
    # Message 1: three temp and two hum points of dA. Message 2 (dA): one temp overwritten, one late point
    # 2 h back, one 30 h back (outside the 24 h). Message 3: dB. Two batches, as two ingest transactions.
    await store(fresh_pool, [
        (1, "dA", [pt("temp", 10 * MIN, 1), pt("temp", 9 * MIN, 2), pt("temp", 8 * MIN, 3),
                   pt("hum", 5 * MIN, 40), pt("hum", 6 * MIN, 41)]),
    ])  # fmt: skip
    await store(fresh_pool, [
        (2, "dA", [pt("temp", 9 * MIN, 20), pt("temp", 2 * HOUR, 0), pt("temp", 30 * HOUR, 0)]),
        (3, "dB", [pt("temp", 1 * MIN, 7)]),
    ])  # fmt: skip
    letter = DeadLetter(
        worker="ingest", reason="bad", subject="s", stream_seq=9, failed_at=datetime.now(UTC), payload="{}"
    )
    async with fresh_pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await dead_letter_stats.apply(cur, [letter])

    a = await read_device_stats(fresh_pool, "dA")
    assert (a.total_metrics, a.active_metrics, a.data_points_count) == (2, 2, 7)
    assert a.last_update == NOW - 5 * MIN
    assert a.last_24h_points == 6  # 3 temp + 2 hum + the late one 2 h back; not the one 30 h back
    assert a.avg_frequency == 6 / 1440
    assert a.last_24h_alerts == 1
    assert a.metrics_by_type == {"gauge": 1, "counter": 0, "histogram": 0, "summary": 0, "undefined": 1}
    assert [(m.name, m.points) for m in a.top_metrics] == [("temp", 5), ("hum", 2)]

    s = await read_service_stats(fresh_pool)
    assert (s.total_devices, s.active_devices, s.last_24h_devices, s.total_metrics) == (2, 2, 2, 2)
    assert s.total_data_points == 8
    assert s.last_24h_points == 7 and sum(h.points for h in s.data_by_hour) == 7
    assert len(s.data_by_hour) == 24
    hours = [h.hour for h in s.data_by_hour]
    assert hours == [hours[0] + i * HOUR for i in range(24)] and hours[-1] >= NOW - HOUR
    assert s.last_24h_alerts == 2
    assert s.devices_by_type == {"gauge": 2, "counter": 0, "histogram": 0, "summary": 0, "undefined": 1}
    assert s.metrics_by_type == {"gauge": 1, "counter": 0, "histogram": 0, "summary": 0, "undefined": 1}
    # 9 points written (overwrites included) in a window of 4 to 5 minutes.
    assert 9 / 300 <= s.points_per_second <= 9 / 240
    assert s.avg_latency == pytest.approx(50.0)
    assert s.error_rate == 1 / 4  # 3 messages stored, 1 dead-lettered
    assert s.storage_size > 0
    assert a.storage_size == s.storage_size * 7 // 8

    unknown = await read_device_stats(fresh_pool, "nobody")
    assert (unknown.total_metrics, unknown.data_points_count, unknown.last_update, unknown.top_metrics) == (
        0,
        0,
        None,
        [],
    )
    assert unknown.last_24h_alerts == 0 and unknown.storage_size == 0
