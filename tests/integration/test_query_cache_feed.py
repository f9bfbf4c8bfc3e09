"""The query cache fed by real stored notices over a real NATS (gateway/latest_feed.py, gateway/query_cache.py),
and its reader (gateway/views/cached_queries.py) around a counted computation.

Notices go to a subject of this test's own (outside the NOTICES stream); they are built by the ingest worker's own
build_notice, as the real ones are.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import nats
import pytest
import structlog
from nats.aio.client import Client

from gateway.latest_cache import LatestCache
from gateway.latest_feed import LatestFeed
from gateway.query_cache import QueryCache
from gateway.views.cached_queries import QueryReads, query_key
from ingest_worker.notices import build_notice
from ingest_worker.storing import storing
from telemetry_core.nats_flush import flush
from telemetry_schemas.api.queries import DataPoint, QueryRequest, TelemetryDataResponse
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.values import Point
from tests.integration.runtime_support import until
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.tcp_cut import TcpCut

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=24)
T1 = T0 + timedelta(hours=24)


def notice(device: str, at: datetime, *, rollups_applied: bool = True, seq: int = 7) -> bytes:
    point = Point(timestamp=at, metric_name="temperature", value=1.0)
    return json_encoder.encode(build_notice(device, seq, [point], rollups_applied=rollups_applied))


def announcement(device: str, at: datetime, seq: int) -> bytes:
    """What the ingest worker publishes before its commit, built by its own function."""
    return msgspec.json.encode(storing([(device, seq, [Point(timestamp=at, metric_name="temperature", value=1.0)])]))


def request(*devices: str) -> QueryRequest:
    return QueryRequest(metrics=["temperature"], devices=list(devices), start_time=T0, end_time=T1,
                        aggregation="avg", interval=3600)  # fmt: skip


async def ask(reads: QueryReads, body: QueryRequest, compute: "Counted") -> TelemetryDataResponse:
    """What answer_query does with a body: one series through the cache, several computed."""
    keyed = query_key(body)
    if keyed is None:
        return await compute()
    return await reads.answer(keyed[0], keyed[1], (body.start_time, body.end_time), compute)


class Counted:
    """The computation QueryReads falls back on: answers with a new value each time, and counts the calls."""

    def __init__(self, device: str) -> None:
        self.device, self.calls = device, 0

    async def __call__(self) -> TelemetryDataResponse:
        self.calls += 1
        point = DataPoint(timestamp=T0, device_id=self.device, metric_name="temperature", value=float(self.calls))
        return TelemetryDataResponse(device_id=self.device, metric_name="temperature", data_points=[point], count=1,
                                     aggregation="avg", interval=3600, start_time=T0, end_time=T1, limit=1000,
                                     offset=0)  # fmt: skip


@pytest.fixture
async def publisher(servers: Servers) -> AsyncIterator[Client]:
    nc = await nats.connect(servers.nats_url)
    yield nc
    await nc.close()


async def start(url: str, prefix: str) -> QueryReads:
    queries = QueryCache(1000, 60.0, startup_hold_s=0.0)  # the hold itself: tests/unit/test_query_cache.py
    feed = LatestFeed(LatestCache(1000, 60.0), [url], structlog.get_logger(), subject=f"{prefix}.*", queries=queries,
                      storing_subject=f"{prefix}-storing")  # fmt: skip
    await feed.start()
    return QueryReads(queries, feed)


async def test_a_notice_in_the_range_makes_the_next_query_compute_again(publisher: Client, servers: Servers) -> None:
    prefix, device = unique("query-feed"), unique("dev")
    reads = await start(servers.nats_url, prefix)
    compute = Counted(device)
    try:
        first = await ask(reads, request(device), compute)
        assert (await ask(reads, request(device), compute)) == first
        assert compute.calls == 1, "the second was answered from the cache"
        # A point after the range: nothing asked for changed.
        await publisher.publish(f"{prefix}.{device}", notice(device, T1 + timedelta(minutes=5)))
        await flush(publisher)
        assert (await ask(reads, request(device), compute)) == first
        assert compute.calls == 1
        # Inside the range: no polling here: once the barrier returns, the notice must have been applied.
        await publisher.publish(f"{prefix}.{device}", notice(device, T0 + timedelta(hours=3)))
        await flush(publisher)
        second = await ask(reads, request(device), compute)
        assert compute.calls == 2
        assert second.data_points[0].value == 2.0
        assert (await ask(reads, request(device), compute)) == second
        assert compute.calls == 2
    finally:
        await reads.feed.stop()


async def test_queries_over_several_series_are_always_computed(servers: Servers) -> None:
    reads = await start(servers.nats_url, unique("query-feed"))
    compute = Counted("multiple")
    try:
        for _ in range(3):
            await ask(reads, request(unique("dev"), unique("dev")), compute)
            await ask(reads, request("a", "b"), compute)
        assert compute.calls == 6
        assert len(reads.cache) == 0
    finally:
        await reads.feed.stop()


async def test_an_old_writers_notice_keeps_reads_out_of_the_cache(publisher: Client, servers: Servers) -> None:
    """A notice without rollups_applied: the rollups projection recomputes its minutes after it was published."""
    prefix, device = unique("query-feed"), unique("dev")
    reads = await start(servers.nats_url, prefix)
    compute = Counted(device)
    try:
        await ask(reads, request(device), compute)
        await publisher.publish(f"{prefix}.other", notice("other", T1 + timedelta(days=3), rollups_applied=False))
        await flush(publisher)
        assert await reads.feed.synced()
        for _ in range(3):
            await ask(reads, request(device), compute)
        assert compute.calls == 4, "nothing answered from, nor kept in, the cache while it holds"
    finally:
        await reads.feed.stop()


async def test_a_dropped_connection_turns_the_query_cache_off_until_resubscribed(servers: Servers) -> None:
    prefix, device = unique("query-feed"), unique("dev")
    relay = TcpCut(servers.nats_url)
    await relay.start()
    reads = await start(relay.url, prefix)
    compute = Counted(device)
    try:
        await ask(reads, request(device), compute)
        relay.cut()  # notices published now never reach this process
        await until(lambda: not reads.cache.enabled, timeout=15, what="the query cache turned off")
        assert len(reads.cache) == 0
        await ask(reads, request(device), compute)
        await ask(reads, request(device), compute)
        assert compute.calls == 3, "computed every time while off, and nothing kept"
        relay.restore()
        await until(lambda: reads.cache.enabled, timeout=15, what="the query cache back on after the reconnect")
        await ask(reads, request(device), compute)
        await ask(reads, request(device), compute)
        assert compute.calls == 4
    finally:
        await reads.feed.stop()
        await relay.stop()


async def test_an_announced_write_keeps_the_cache_out_of_its_range_until_stored(
    publisher: Client, servers: Servers
) -> None:
    """Announced before the commit: from the barrier on, answers are computed until the stored notice."""
    prefix, device = unique("query-feed"), unique("dev")
    reads = await start(servers.nats_url, prefix)
    compute = Counted(device)
    try:
        await ask(reads, request(device), compute)
        await publisher.publish(f"{prefix}-storing", announcement(device, T0 + timedelta(hours=2), 41))
        await flush(publisher)
        for _ in range(3):  # the transaction may commit any moment: every answer comes from the database
            await ask(reads, request(device), compute)
        assert compute.calls == 4
        await publisher.publish(f"{prefix}.{device}", notice(device, T0 + timedelta(hours=2), seq=41))
        await flush(publisher)
        assert await reads.feed.synced()  # a miss does not wait for the barrier: here the notice is applied
        await ask(reads, request(device), compute)  # computed (nothing was kept meanwhile), and kept now
        await ask(reads, request(device), compute)
        assert compute.calls == 5
    finally:
        await reads.feed.stop()
