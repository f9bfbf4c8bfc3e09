"""The latest-value prefill (gateway/latest_prefill.py) against the real database: what it fills, retries, skips.

Notices are handed to the cache directly (the feed that decodes them is tested in test_latest_feed.py); rows are
written to telemetry.latest_values and telemetry.points as the projection and the ingest worker would.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from psycopg_pool import AsyncConnectionPool

from gateway import latest_prefill
from gateway.latest_cache import REFILLS_PER_READ, Key, LatestCache
from gateway.latest_prefill import MAX_ATTEMPTS, LatestPrefill
from gateway.metrics import LATEST_CACHE_PREFILLS
from gateway.views.latest import LatestReads
from tests.support.ids import unique

T0 = datetime(2031, 11, 4, 9, 0, tzinfo=UTC)
_COLUMNS = "(device_id, metric_name, time, value_type, value_num, src_seq) VALUES (%s, 'm', %s, 0, %s, %s)"
_POINT = "INSERT INTO telemetry.points " + _COLUMNS
_LATEST = "INSERT INTO telemetry.latest_values " + _COLUMNS


async def projected(pool: AsyncConnectionPool, device: str, value: float, seq: int, at: datetime = T0) -> None:
    """A point of (device, m) and the latest_values row the projection makes of it."""
    async with pool.connection() as conn:
        await conn.execute("SELECT telemetry.ensure_partition(%s::date)", (at.date(),))
        for insert in (_POINT, _LATEST):
            await conn.execute(insert, (device, at, value, seq))


async def a_series(pool: AsyncConnectionPool, value: float) -> Key:
    """A new device's series (device, m) with one point, projected (message 7)."""
    key: Key = (unique("dev"), "m")
    await projected(pool, key[0], value, 7)
    return key


async def stored_only(pool: AsyncConnectionPool, device: str, value: float, seq: int, at: datetime) -> None:
    """A point the projection has not applied yet: latest_values is behind the raw points."""
    async with pool.connection() as conn:
        await conn.execute(_POINT, (device, at, value, seq))


class NoPool:
    """A pool no read may use: a read that went to the database fails the test."""

    def connection(self) -> Any:
        raise AssertionError("the read went to the database")


class Synced:
    """The feed's barrier, passed: test_latest_feed.py tests the real one."""

    async def synced(self) -> bool:
        return True


def on_cache(size: int = 100) -> LatestCache:
    cache = LatestCache(size, 60.0)
    cache.enable()
    return cache


def counted(result: str) -> float:
    return float(LATEST_CACHE_PREFILLS.labels(result)._value.get())


async def test_a_noticed_series_is_filled_a_round_later_and_its_first_read_is_a_hit(pool: AsyncConnectionPool) -> None:
    key = await a_series(pool, 21.5)
    device = key[0]
    cache = on_cache()
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.05)
    cache.notice(key, (T0, 7))
    assert await prefill.round() == 0  # noticed during this interval: filled at the next round
    assert cache.get(key, 0.0) is None
    assert await prefill.round() == 1
    found = cache.get(key, 0.0)
    assert found is not None and (found.value, found.timestamp) == (21.5, T0)

    reads = LatestReads(NoPool(), cache, Synced())  # type: ignore[arg-type]  # stand-ins that fail if used wrongly
    answer = await reads.latest(device, "m", T0 - timedelta(hours=1))
    assert answer is not None and answer.value == 21.5
    assert await prefill.round() == 0  # held: not filled again


async def newer(pool: AsyncConnectionPool, device: str, value: float, seq: int, at: datetime) -> None:
    """A later point of (device, m), stored and projected."""
    await stored_only(pool, device, value, seq, at)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE telemetry.latest_values SET time = %s, value_num = %s, src_seq = %s WHERE device_id = %s",
            (at, value, seq, device),
        )


async def test_a_polled_series_written_meanwhile_is_filled_again_before_the_next_poll(
    pool: AsyncConnectionPool,
) -> None:
    key = await a_series(pool, 1.0)
    device, since = key[0], T0 - timedelta(hours=1)
    cache = on_cache()
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.05)
    first = await LatestReads(pool, cache, Synced()).latest(device, "m", since)  # the dashboard's first poll: a miss
    assert first is not None and first.value == 1.0
    polls = LatestReads(NoPool(), cache, Synced())  # type: ignore[arg-type]  # later polls must be hits
    for step, value in enumerate((2.0, 3.0), start=1):
        at = T0 + timedelta(seconds=step)
        await newer(pool, device, value, 7 + step, at)
        cache.notice(key, (at, 7 + step))  # the device wrote: the entry is pending
        assert cache.get(key, 0.0) is None
        assert [await prefill.round() for _ in range(2)] == [1, 0]  # read again at the next round
        answer = await polls.latest(device, "m", since)
        assert answer is not None and (answer.value, answer.timestamp) == (value, at)

    # No poll from here on: the last poll's REFILLS_PER_READ refills, then the entry is left to the next read.
    for step in range(3, REFILLS_PER_READ + 4):
        at = T0 + timedelta(seconds=step)
        await newer(pool, device, float(step + 1), 7 + step, at)
        cache.notice(key, (at, 7 + step))
        refilled = 1 if step < REFILLS_PER_READ + 3 else 0
        assert [await prefill.round() for _ in range(2)] == [refilled, 0]
    assert cache.get(key, 0.0) is None


async def test_a_series_behind_its_raw_points_is_tried_again_later_and_kept_once_caught_up(
    pool: AsyncConnectionPool,
) -> None:
    key = await a_series(pool, 1.0)
    device = key[0]
    await stored_only(pool, device, 2.0, 8, T0 + timedelta(seconds=1))  # the projection has yet to apply it
    cache = on_cache()
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.05)
    cache.notice(key, (T0 + timedelta(seconds=1), 8))
    not_kept = counted("not_kept")
    assert [await prefill.round() for _ in range(2)] == [0, 0]  # round 2 read it: not caught up, not kept
    assert counted("not_kept") - not_kept == 1
    assert cache.get(key, 0.0) is None
    async with pool.connection() as conn:  # the projection catches up
        await conn.execute(
            "UPDATE telemetry.latest_values SET time = %s, value_num = 2.0, src_seq = 8 WHERE device_id = %s",
            (T0 + timedelta(seconds=1), device),
        )
    assert await prefill.round() == 0  # round 3: the retry is due at round 2 + 2
    assert await prefill.round() == 1
    found = cache.get(key, 0.0)
    assert found is not None and found.value == 2.0


async def test_a_series_never_caught_up_is_given_up_after_the_last_attempt(pool: AsyncConnectionPool) -> None:
    key = await a_series(pool, 1.0)
    device = key[0]
    await stored_only(pool, device, 2.0, 8, T0 + timedelta(seconds=1))
    cache = on_cache()
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.05)
    cache.notice(key, (T0 + timedelta(seconds=1), 8))
    not_kept = counted("not_kept")
    for _ in range(2 + 2 + 4 + 8 + 4):  # the first read at round 2, retries 2, 4 and 8 rounds after, some to spare
        assert await prefill.round() == 0
    assert counted("not_kept") - not_kept == MAX_ATTEMPTS
    assert cache.get(key, 0.0) is None  # left to the first read


async def test_a_full_cache_keeps_its_entries_and_prefills_nothing(pool: AsyncConnectionPool) -> None:
    held, noticed = unique("dev"), unique("dev")
    for device in (held, noticed):
        await projected(pool, device, 3.0, 7)
    cache = on_cache(size=1)
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.05)
    fill = cache.begin_fill((held, "m"))
    assert fill is not None  # a read in flight holds the only place
    cache.notice((noticed, "m"), (T0, 7))
    assert [await prefill.round() for _ in range(3)] == [0, 0, 0]
    assert len(cache) == 1 and cache.get((noticed, "m"), 0.0) is None
    assert cache.finish_fill(fill, None, None, True, 0.0) is False  # the read in flight still owns its entry
    assert cache.needs_fill((held, "m")) and not cache.needs_fill((noticed, "m"))


async def test_the_loop_fills_logs_a_failed_round_and_stops_on_the_signal(
    pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await a_series(pool, 4.0)
    real, calls = latest_prefill.fill_series, 0

    async def fails_once(*args: Any) -> list[Key]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database went away")
        return await real(*args)

    monkeypatch.setattr(latest_prefill, "fill_series", fails_once)
    cache = on_cache()
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.02)
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(prefill.run(stop))
        cache.notice(key, (T0, 7))  # its first read fails: left to reads, so a second notice brings it back
        deadline = asyncio.get_running_loop().time() + 10
        while cache.get(key, 0.0) is None:
            assert asyncio.get_running_loop().time() < deadline, "the loop did not fill the series in time"
            if calls == 1:
                cache.notice(key, (T0, 7))
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert [e["error"] for e in logs if e["event"] == "latest_prefill_failed"] == ["the database went away"]
    assert calls >= 2


async def test_no_round_runs_while_busy_and_what_was_noticed_is_filled_at_the_first_round_after(
    pool: AsyncConnectionPool,
) -> None:
    key = await a_series(pool, 5.0)
    busy = True
    cache = on_cache()
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.1, busy=lambda: busy)
    stop = asyncio.Event()
    task = asyncio.create_task(prefill.run(stop))
    try:
        cache.notice(key, (T0, 7))
        for _ in range(40):  # 0.4 s: four rounds would have run, and filled it
            await asyncio.sleep(0.01)
        assert cache.get(key, 0.0) is None
        busy = False
        deadline = asyncio.get_running_loop().time() + 10
        while cache.get(key, 0.0) is None:
            assert asyncio.get_running_loop().time() < deadline, "not filled once no longer busy"
            await asyncio.sleep(0.01)
        assert prefill._round == 1  # noticed during the wait: old enough, not held back for another round
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_round_does_not_push_out_entries_that_requests_read(pool: AsyncConnectionPool) -> None:
    """Room shrinks between a notice and the round (reads fill entries): the round fills no more than the room."""
    held, noticed = unique("dev"), [unique("dev") for _ in range(3)]
    for device in (held, *noticed):
        await projected(pool, device, 8.0, 7)
    cache = on_cache(size=3)
    prefill = LatestPrefill(cache, pool, structlog.get_logger(), 0.05)
    for device in noticed:
        cache.notice((device, "m"), (T0, 7))  # room for all three when they were noticed
    assert await prefill.round() == 0
    fill = cache.begin_fill((held, "m"))  # then a request's read takes a place
    assert fill is not None and cache.finish_fill(fill, None, None, True, 0.0) is False
    assert await prefill.round() == 2  # two places left
    assert len(cache) == 3 and cache.needs_fill((held, "m"))  # the request's entry is still there
