"""The latest-value cache fed by real stored notices over a real NATS (gateway/latest_feed.py).

Notices go to a subject of this test's own (outside the NOTICES stream, so no projection applies them); they are
built by the ingest worker's own build_notice, as the real ones are.
"""

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
import structlog
from nats.aio.client import Client

from gateway.latest_cache import LatestCache
from gateway.latest_feed import LatestFeed
from ingest_worker.notices import build_notice
from telemetry_core.nats_flush import flush
from telemetry_schemas.api.queries import LatestValueResponse
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.values import Point
from tests.integration.runtime_support import until
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.tcp_cut import TcpCut

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def row(device: str, value: float, at: datetime = T0) -> LatestValueResponse:
    return LatestValueResponse(device_id=device, metric_name="temperature", value=value, unit=None, timestamp=at,
                               tags={}, metadata={})  # fmt: skip


def fill(cache: LatestCache, device: str, value: float, at: datetime, seq: int) -> None:
    started = cache.begin_fill((device, "temperature"))
    assert started is not None, "the cache is on"
    assert cache.finish_fill(started, row(device, value, at), (at, seq), True, 0.0)


def notice(device: str, at: datetime, seq: int, value: float = 9.0) -> bytes:
    point = Point(timestamp=at, metric_name="temperature", value=value)
    return json_encoder.encode(build_notice(device, seq, [point]))


@pytest.fixture
async def publisher(servers: Servers) -> AsyncIterator[Client]:
    nc = await nats.connect(servers.nats_url)
    yield nc
    await nc.close()


async def start_feed(url: str, prefix: str, **options: int) -> LatestFeed:
    feed = LatestFeed(LatestCache(1000, 60.0), [url], structlog.get_logger(), subject=f"{prefix}.*")
    await feed.start(**options)
    return feed


async def test_after_the_barrier_a_newer_notice_has_made_the_entry_pending(publisher: Client, servers: Servers) -> None:
    prefix, device = unique("latest-feed"), unique("dev")
    feed = await start_feed(servers.nats_url, prefix)
    try:
        fill(feed.cache, device, 1.0, T0, 10)
        # Older in (time, POINTS sequence) than the row: latest_values would keep the row, so does the cache.
        await publisher.publish(f"{prefix}.{device}", notice(device, T0 - timedelta(seconds=5), 20))
        await publisher.publish(f"{prefix}.{device}", notice(device, T0, 9))
        await flush(publisher)  # the server has routed both to the feed's connection
        assert await feed.synced()
        assert feed.notices == 2
        assert feed.cache.get((device, "temperature"), 1.0) == row(device, 1.0)
        # Newer: no polling here: once the barrier returns, the notice must have been applied.
        await publisher.publish(f"{prefix}.{device}", notice(device, T0 + timedelta(seconds=1), 21))
        await flush(publisher)
        assert await feed.synced()
        assert feed.cache.get((device, "temperature"), 1.0) is None
        # A read that is still behind that notice is not kept; one that caught up is.
        started = feed.cache.begin_fill((device, "temperature"))
        assert started is not None
        assert not feed.cache.finish_fill(started, row(device, 1.0), (T0, 10), True, 1.0)
        assert feed.cache.finish_fill(started, row(device, 9.0, T0 + timedelta(seconds=1)),
                                      (T0 + timedelta(seconds=1), 21), True, 1.0)  # fmt: skip
        assert feed.cache.get((device, "temperature"), 1.0) == row(device, 9.0, T0 + timedelta(seconds=1))
    finally:
        await feed.stop()


async def test_a_dropped_connection_turns_the_cache_off_until_resubscribed(servers: Servers) -> None:
    prefix, device = unique("latest-feed"), unique("dev")
    relay = TcpCut(servers.nats_url)
    await relay.start()
    feed = await start_feed(relay.url, prefix)
    try:
        fill(feed.cache, device, 1.0, T0, 10)
        assert await feed.synced()
        relay.cut()  # the network goes: notices published now never reach this process
        await until(lambda: not feed.cache.enabled, timeout=15, what="the cache turned off")
        assert len(feed.cache) == 0
        assert feed.cache.get((device, "temperature"), 1.0) is None
        assert feed.cache.begin_fill((device, "temperature")) is None  # nor does it keep reads meanwhile
        assert not await feed.synced()
        relay.restore()
        await until(lambda: feed.cache.enabled, timeout=15, what="the cache back on after the reconnect")
        assert await feed.synced()
        assert feed.cache.get((device, "temperature"), 1.0) is None  # nothing from before the outage answers
        fill(feed.cache, device, 2.0, T0, 11)
        assert feed.cache.get((device, "temperature"), 1.0) == row(device, 2.0)
    finally:
        await feed.stop()
        await relay.stop()


async def test_notices_dropped_as_a_slow_consumer_empty_the_cache(publisher: Client, servers: Servers) -> None:
    prefix, device = unique("latest-feed"), unique("dev")
    feed = await start_feed(servers.nats_url, prefix, pending_msgs_limit=2)
    try:
        fill(feed.cache, device, 1.0, T0, 10)
        epoch = feed.cache.epoch
        for i in range(300):  # one burst: the client's reader queues them faster than the callback takes them
            await publisher.publish(f"{prefix}.other-{i}", notice(f"other-{i}", T0, 100 + i))
        await flush(publisher)
        await until(lambda: feed.cache.epoch > epoch, timeout=15, what="the dropped notices emptied the cache")
        assert feed.cache.get((device, "temperature"), 1.0) is None
        assert feed.cache.enabled  # the subscription itself is still there
    finally:
        await feed.stop()


async def test_only_a_series_the_cache_holds_waits_for_the_barrier(servers: Servers) -> None:
    """A miss reads the database either way: it must not pay the PING round trip (a dashboard rotating over
    many series paid it on every request: make bench-peers' q1 sequential p50 doubled)."""
    from psycopg_pool import AsyncConnectionPool

    from gateway.views.latest import LatestReads

    prefix, cached, uncached = unique("latest-feed"), unique("dev"), unique("dev")
    feed = await start_feed(servers.nats_url, prefix)
    barriers = 0
    synced = feed.synced

    async def counting() -> bool:
        nonlocal barriers
        barriers += 1
        return await synced()

    feed.synced = counting  # type: ignore[method-assign]  # a probe around the real barrier
    pool = AsyncConnectionPool(servers.database_url, min_size=1, max_size=1, open=False)
    await pool.open()
    try:
        reads = LatestReads(pool, feed.cache, feed)
        assert await reads.latest(uncached, "temperature", T0 - timedelta(days=1)) is None  # no such series
        assert barriers == 0
        started = feed.cache.begin_fill((cached, "temperature"))
        assert started is not None
        assert feed.cache.finish_fill(
            started, row(cached, 4.0), (T0, 10), True, time.monotonic()
        )  # fresh: not past the TTL
        assert await reads.latest(cached, "temperature", T0 - timedelta(days=1)) == row(cached, 4.0)
        assert barriers == 1
    finally:
        await pool.close()
        await feed.stop()
