"""The retention job against a real PostgreSQL: what it removes, what it keeps, and two runs at once.

It runs on a database of its own (created on the session's server): the suite's shared database holds
points of every age that other tests still read.
"""

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import structlog
from psycopg import AsyncConnection

from ingest_worker.retention_loop import run_retention_periodically
from telemetry_core import cli
from telemetry_core.metrics import WORKER_REGISTRY
from telemetry_core.retention import RETENTION_LOCK, RetentionJob, cutoff_groups, run_retention
from telemetry_core.settings import Settings
from tests.support.own_database import own_database

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def own_db(settings: Settings) -> Iterator[str]:
    assert settings.database_url
    with own_database(settings.database_url, "retention") as url:
        yield url


@pytest.fixture
async def conn(own_db: str) -> AsyncIterator[AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(own_db, autocommit=True) as c:
        yield c


async def define(conn: AsyncConnection, name: str, days: int) -> None:
    await conn.execute(
        "INSERT INTO telemetry.metric_definitions (name, metric_id, data_type, metric_type, retention_days,"
        " aggregation_interval, created_at, updated_at, created_by) VALUES (%s, %s, 'numeric', 'gauge', %s, 60,"
        " now(), now(), 'test')",
        (name, f"m_{name}", days),
    )


async def put(conn: AsyncConnection, device: str, metric: str, ages_days: list[float]) -> None:
    for i, age in enumerate(ages_days):
        at = NOW - timedelta(days=age)
        await conn.execute("SELECT telemetry.ensure_partition(%s::date)", (at.date(),))
        await conn.execute(
            "INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, src_seq)"
            " VALUES (%s, %s, %s, 0, %s, %s)",
            (device, metric, at, float(i), i + 1),
        )


async def ages(conn: AsyncConnection, metric: str) -> list[float]:
    cur = await conn.execute("SELECT time FROM telemetry.points WHERE metric_name = %s ORDER BY time DESC", (metric,))
    return [round((NOW - t).total_seconds() / 86_400, 3) for (t,) in await cur.fetchall()]


async def partitions(conn: AsyncConnection) -> set[str]:
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'telemetry.points'::regclass"
    )
    return {r[0] for r in await cur.fetchall()}


def settings_for(settings: Settings, chunk: int = 3) -> Settings:
    return replace(settings, retention_default_days=90, rollup_retention_days=400, retention_chunk_rows=chunk)


def test_cutoff_groups_one_per_retention_and_one_for_undefined() -> None:
    groups = cutoff_groups({"a": 7, "b": 7, "c": 30}, 90, NOW)
    assert [(g.metrics, g.others, (NOW - g.cutoff).days) for g in groups] == [
        (("a", "b"), False, 7), (("c",), False, 30), (("a", "b", "c"), True, 90),
    ]  # fmt: skip


async def test_removes_old_points_of_short_retention_metric_keeps_young_and_others(
    conn: AsyncConnection, own_db: str, settings: Settings
) -> None:
    await define(conn, "short", 7)
    await define(conn, "long", 3650)  # keeps every partition from being dropped whole: chunks are used
    await put(conn, "dev_a", "short", [1, 3, 6.9, 7.1, 8, 20, 20.5])
    await put(conn, "dev_b", "short", [2, 10, 10.2, 10.4, 10.6])  # more than one chunk in one partition
    await put(conn, "dev_a", "long", [1, 8, 20, 100])
    await put(conn, "dev_a", "undefined", [1, 8, 20, 89, 91, 100])  # default retention: 90 days

    report = await run_retention(own_db, settings_for(settings), now=NOW)

    assert await ages(conn, "short") == [1.0, 2.0, 3.0, 6.9]
    assert await ages(conn, "long") == [1.0, 8.0, 20.0, 100.0]
    assert await ages(conn, "undefined") == [1.0, 8.0, 20.0, 89.0]
    assert report.partitions_dropped == []
    assert report.points_deleted_in_chunks == 4 + 4 + 2
    assert report.chunks >= 4  # bounded: never more than 3 rows per transaction here
    cur = await conn.execute("SELECT dry_run, points_deleted FROM telemetry.retention_runs")
    assert await cur.fetchall() == [(False, 10)]

    again = await run_retention(own_db, settings_for(settings), now=NOW)  # idempotent
    assert (again.points_removed, again.skipped) == (0, False)


async def test_drops_whole_partitions_when_every_metric_has_expired(
    conn: AsyncConnection, own_db: str, settings: Settings
) -> None:
    await define(conn, "short", 7)
    await put(conn, "dev_a", "short", [1, 8, 95.5, 120.5])
    await put(conn, "dev_a", "undefined", [1, 50, 95.5, 120.5])
    old = {f"points_p{(NOW - timedelta(days=d)).strftime('%Y%m%d')}" for d in (95.5, 120.5)}
    await conn.execute(
        "INSERT INTO telemetry.rollup_minute VALUES ('dev_a', 'short', %s, 1, 1, 1, 1, '{}'),"
        " ('dev_a', 'short', %s, 1, 1, 1, 1, '{}')",
        (NOW - timedelta(days=100), NOW - timedelta(days=500)),
    )
    await conn.execute(  # an hour's pending sketches (migration 0023) go with the rollups: the 500-day one only
        "INSERT INTO telemetry.rollup_hour_pending VALUES ('dev_a', 'short', %s, '{\"p1\": 1}'),"
        " ('dev_a', 'short', %s, '{\"p1\": 1}')",
        (NOW - timedelta(days=100), NOW - timedelta(days=500)),
    )

    dry = await run_retention(own_db, settings_for(settings), now=NOW, dry_run=True)
    assert set(dry.partitions_dropped) == old and dry.points_removed == 5 and dry.rollup_rows_deleted == 2
    assert old <= await partitions(conn)  # a dry run removes nothing

    report = await run_retention(own_db, settings_for(settings), now=NOW)

    assert set(report.partitions_dropped) == old
    assert (report.points_in_dropped, report.points_deleted_in_chunks, report.rollup_rows_deleted) == (4, 1, 2)
    assert not (old & await partitions(conn))
    assert await ages(conn, "short") == [1.0]  # rollups older than 400 days gone, the 100-day one kept:
    assert await ages(conn, "undefined") == [1.0, 50.0]
    cur = await conn.execute("SELECT count(*) FROM telemetry.rollup_minute")
    assert await cur.fetchone() == (1,)
    cur = await conn.execute("SELECT bucket FROM telemetry.rollup_hour_pending")
    assert await cur.fetchall() == [(NOW - timedelta(days=100),)]


async def test_two_concurrent_runs_neither_double_delete_nor_deadlock(
    conn: AsyncConnection, own_db: str, settings: Settings
) -> None:
    await define(conn, "short", 7)
    await define(conn, "long", 3650)
    for d in range(6):
        await put(conn, f"dev_{d}", "short", [8 + i / 10 for i in range(10)] + [1])

    async def one() -> tuple[bool, int]:
        async with await psycopg.AsyncConnection.connect(own_db, autocommit=True) as c:
            r = await RetentionJob(c, settings_for(settings, chunk=2), now=NOW).run()
            return r.skipped, r.points_removed

    results = await asyncio.wait_for(asyncio.gather(one(), one(), one()), timeout=60)

    assert sum(n for _, n in results) == 60  # every expired point removed exactly once between them
    assert any(not skipped for skipped, _ in results)
    assert all(n == 0 for skipped, n in results if skipped)
    assert await ages(conn, "short") == [1.0] * 6


async def test_a_run_skips_while_another_holds_the_lock(conn: AsyncConnection, own_db: str, settings: Settings) -> None:
    await define(conn, "short", 7)
    await put(conn, "dev_a", "short", [1, 8])
    await conn.execute("SELECT pg_advisory_lock(%s)", (RETENTION_LOCK,))  # "another worker" mid-run
    skipped = await run_retention(own_db, settings_for(settings), now=NOW)
    assert skipped.skipped and skipped.points_removed == 0
    assert await ages(conn, "short") == [1.0, 8.0]
    await conn.execute("SELECT pg_advisory_unlock(%s)", (RETENTION_LOCK,))
    done = await run_retention(own_db, settings_for(settings), now=NOW)
    assert (done.skipped, done.points_removed) == (False, 1)


async def test_counters_and_latest_value_after_points_expire(
    conn: AsyncConnection, own_db: str, settings: Settings
) -> None:
    await define(conn, "short", 7)
    await put(conn, "dev_a", "short", [8, 9])
    # The device's last known value is kept (README, "Retention and replay"): it is not a stored point.
    await conn.execute(
        "INSERT INTO telemetry.latest_values (device_id, metric_name, time, value_type, value_num, src_seq)"
        " VALUES ('dev_a', 'short', %s, 0, 1.0, 2)",
        (NOW - timedelta(days=8),),
    )
    before = WORKER_REGISTRY.get_sample_value("telemetry_retention_points_deleted_total", {"how": "chunk"}) or 0.0
    await run_retention(own_db, settings_for(settings), now=NOW)
    after = WORKER_REGISTRY.get_sample_value("telemetry_retention_points_deleted_total", {"how": "chunk"})
    assert after == before + 2
    assert await ages(conn, "short") == []
    cur = await conn.execute("SELECT value_num FROM telemetry.latest_values WHERE device_id = 'dev_a'")
    assert await cur.fetchall() == [(1.0,)]


async def test_the_ingest_worker_schedule_runs_the_job(conn: AsyncConnection, own_db: str, settings: Settings) -> None:
    shift = (NOW - datetime.now(UTC)).total_seconds() / 86_400  # put() counts ages back from NOW, the job from now
    await put(conn, "dev_a", "undefined", [shift + 1, shift + 400])
    stop = asyncio.Event()
    every_second = replace(settings, database_url=own_db, retention_interval_s=1)
    task = asyncio.create_task(run_retention_periodically(every_second, structlog.get_logger(), stop))

    async def runs() -> int:
        cur = await conn.execute("SELECT count(*) FROM telemetry.retention_runs")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    deadline = asyncio.get_running_loop().time() + 30
    while await runs() < 1:
        assert asyncio.get_running_loop().time() < deadline, "the scheduled run never happened"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [round(a - shift) for a in await ages(conn, "undefined")] == [1]  # 400 days old: expired


def test_cli_dry_run_reports_and_removes_nothing(
    own_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = datetime.now(UTC) - timedelta(days=200)
    with psycopg.connect(own_db, autocommit=True) as c:
        c.execute("SELECT telemetry.ensure_partition(%s::date)", (old.date(),))
        c.execute(
            "INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, src_seq)"
            " VALUES ('d', 'm', %s, 0, 1, 1)",
            (old,),
        )
    monkeypatch.setenv("DATABASE_URL", own_db)
    cli.main(["retention", "run", "--dry-run"])
    out = capsys.readouterr().out
    assert out.startswith("retention would remove 1 point(s) (1 partition(s) dropped whole with 1")
    assert f"partition telemetry.points_p{old:%Y%m%d}: would be dropped" in out
    with psycopg.connect(own_db) as c:
        assert c.execute("SELECT count(*) FROM telemetry.points").fetchone() == (1,)
