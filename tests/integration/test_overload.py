"""Overload, each mechanism made to fail on purpose in an in-process gateway against the real servers.

* a stopped ingest worker lets the backlog grow past the limit: ingestion 503 + Retry-After, health says
  shedding_load, /metrics counts it; once the backlog is stored, ingestion is admitted again;
* the pool held: a read answers 503 "busy" with Retry-After (not "PostgreSQL is unavailable"), counted;
* a statement past the statement timeout: cancelled by PostgreSQL, answered 504 with a clear detail;
* the heavy-query semaphore held: a raw aggregation waits, then 503 busy; a rollup query is not held up.
"""

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import nats
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from psycopg.errors import QueryCanceled

from gateway.app import create_app
from gateway.errors import ServiceBusy
from gateway.heavy_queries import HeavyQueries
from gateway.state import GatewayState
from telemetry_core.embedded import start_nats
from telemetry_core.settings import Settings
from telemetry_core.topology import INGEST, POINTS_STREAM
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import SIGNING_KEY

KEY = "test-key-0123456789"
HEADERS = {"X-Api-Key": KEY}
T = TypeVar("T")


async def eventually_async(fn: Callable[[], Awaitable[T]], within_s: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + within_s
    while True:
        result = await fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within_s}s: {what}")
        await asyncio.sleep(0.05)


def _settings(nats_url: str, database_url: str, **env: str) -> Settings:
    return Settings.from_env({"NATS_URL": nats_url, "DATABASE_URL": database_url, "TELEMETRY_API_KEYS": KEY,
                              "TELEMETRY_SIGNING_KEY": SIGNING_KEY, **env})  # fmt: skip


def _refused(client: TestClient[Litestar], reason: str) -> float:
    text = client.get("/metrics", headers=HEADERS).text
    found = re.search(rf'^telemetry_overload_refusals_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _point(value: float = 1.0) -> dict[str, Any]:
    return {"timestamp": datetime.now(UTC).isoformat(), "metric_name": "temperature", "value": value}


class Held:
    """Hold an async context manager of the app's own event loop (the test client runs it in another thread)."""

    def __init__(self, client: TestClient[Litestar], enter: Callable[[AsyncExitStack], Awaitable[None]]) -> None:
        self.portal = client.blocking_portal
        self.enter = enter
        self.held = threading.Event()
        self.release: asyncio.Event | None = None

    async def _hold(self) -> None:
        self.release = asyncio.Event()
        async with AsyncExitStack() as stack:
            await self.enter(stack)
            self.held.set()
            await self.release.wait()

    def __enter__(self) -> "Held":
        self.future = self.portal.start_task_soon(self._hold)
        assert self.held.wait(10), "the app loop did not take the resource"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.release is not None
        self.portal.call(self.release.set)
        self.future.result(10)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[str]:
    """NATS of this test alone: no ingest worker drains its POINTS."""
    server = start_nats(tmp_path / "nats", sync_interval="1s")
    yield server.url
    server.stop()


async def _points_stored(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return int((await nc.jetstream().stream_info(POINTS_STREAM)).state.messages)
    finally:
        await nc.close()


async def _ack_backlog(nats_url: str) -> int:
    """What the ingest worker does once back: take the pending messages and acknowledge them."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe("", durable=INGEST.durable, stream=INGEST.stream)
        msgs = await sub.fetch(1, timeout=5)  # the one point published before the shedding
        for msg in msgs:
            await msg.ack_sync()
        return len(msgs)
    finally:
        await nc.close()


def test_backlog_past_the_limit_sheds_ingestion_until_storage_catches_up(own_nats: str, servers: Servers) -> None:
    settings = _settings(own_nats, servers.database_url, TELEMETRY_MAX_INGEST_BACKLOG="0.5",
                         TELEMETRY_BACKLOG_CHECK_INTERVAL="0.1")  # fmt: skip
    device = unique("shed")
    url = f"/api/v1/telemetry/devices/{device}/telemetry"
    with TestClient(app=create_app(settings), timeout=15) as client:
        assert client.post(url, json=_point(), headers=HEADERS).status_code == 200
        refused_before = _refused(client, "ingest_backlog")
        health = eventually(lambda: (b := client.get("/health/detailed", headers=HEADERS).json())["shedding_load"]
                            and b, timeout=20, what="the gateway to shed load")  # fmt: skip
        load = health["components"]["load"]
        assert load["status"] == "shedding"
        assert load["metrics"]["ingest"]["backlog_s"] > 0.5
        assert load["metrics"]["ingest"]["pending_messages"] == 1
        assert "storage is" in load["detail"]

        stored_before = asyncio.run(_points_stored(own_nats))
        single = client.post(url, json=_point(2.0), headers=HEADERS)
        batch = client.post(f"{url}/batch", json={"data_points": [_point(3.0)]}, headers=HEADERS)
        for r in (single, batch):
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["detail"].startswith("the service is shedding load: storage is")
            assert "TELEMETRY_MAX_INGEST_BACKLOG" in r.json()["detail"]
        assert asyncio.run(_points_stored(own_nats)) == stored_before  # nothing was published
        assert _refused(client, "ingest_backlog") == refused_before + 2
        assert re.search(r"^telemetry_ingest_shedding 1\.0$", client.get("/metrics", headers=HEADERS).text, re.M)

        assert asyncio.run(_ack_backlog(own_nats)) == 1  # storage catches up
        eventually(lambda: client.post(url, json=_point(4.0), headers=HEADERS).status_code == 200, timeout=20,
                   what="ingestion admitted again")  # fmt: skip
        assert client.get("/health/detailed", headers=HEADERS).json()["shedding_load"] is False


async def _fetch_and_hold(nats_url: str) -> Any:
    """A worker that fetched the pending message and died holding it: delivered, never acknowledged."""
    nc = await nats.connect(nats_url)
    sub = await nc.jetstream().pull_subscribe("", durable=INGEST.durable, stream=INGEST.stream)
    msgs = await sub.fetch(1, timeout=5)
    await nc.close()  # no ack, no nak: JetStream redelivers it after the consumer's ack wait (30 s)
    return len(msgs)


def test_a_message_held_in_flight_does_not_shed_everyone(own_nats: str, servers: Servers) -> None:
    # Regression: the backlog was once read at the ack floor, so one message in a killed worker's ack wait (or in
    # a retry back-off) stopped the floor and every client's writes were refused for 30 s while storage kept up.
    settings = _settings(own_nats, servers.database_url, TELEMETRY_MAX_INGEST_BACKLOG="0.5",
                         TELEMETRY_BACKLOG_CHECK_INTERVAL="0.1")  # fmt: skip
    url = f"/api/v1/telemetry/devices/{unique('held')}/telemetry"
    with TestClient(app=create_app(settings), timeout=15) as client:
        assert client.post(url, json=_point(), headers=HEADERS).status_code == 200
        assert asyncio.run(_fetch_and_hold(own_nats)) == 1
        gw = _gw(client)
        deadline = time.monotonic() + 1.5  # three times the limit: a held message would have shed by then
        while time.monotonic() < deadline:
            assert client.post(url, json=_point(2.0), headers=HEADERS).status_code == 200
            assert asyncio.run(_fetch_and_hold(own_nats)) == 1  # that one too: only in-flight messages remain
            assert not gw.backlog.shedding, gw.backlog.figures()


def test_a_stale_backlog_figure_sheds_nothing(own_nats: str, servers: Servers) -> None:
    settings = _settings(own_nats, servers.database_url, TELEMETRY_MAX_INGEST_BACKLOG="0.5",
                         TELEMETRY_BACKLOG_CHECK_INTERVAL="0.1")  # fmt: skip
    with TestClient(app=create_app(settings), timeout=15) as client:
        monitor = _gw(client).backlog
        monitor.backlog_s, monitor.measured_at = 30.0, time.monotonic()
        assert monitor.shedding  # a fresh figure over the limit sheds
        assert monitor.behind(1.0) and not monitor.behind(30.0)  # what background work yields to
        monitor.measured_at = time.monotonic() - monitor.stale_after_s - 0.1
        assert not monitor.shedding  # NATS away, nothing measured lately: the publish says what is wrong
        assert not monitor.behind(1.0)


@pytest.fixture
def tight(servers: Servers, settings: Settings) -> Iterator[TestClient[Litestar]]:
    """A gateway with a 2-connection pool, short waits, a 1 s statement timeout and one heavy-query slot."""
    assert settings.nats_url
    tight = _settings(settings.nats_url, servers.database_url, TELEMETRY_DB_POOL_MAX="2", TELEMETRY_DB_TIMEOUT="0.3",
                      TELEMETRY_STATEMENT_TIMEOUT="1", TELEMETRY_HEAVY_QUERY_CONCURRENCY="1",
                      TELEMETRY_HEAVY_QUERY_WAIT="0.3", TELEMETRY_MAX_INGEST_BACKLOG="0")  # fmt: skip
    with TestClient(app=create_app(tight), timeout=15) as client:
        yield client


def _gw(client: TestClient[Litestar]) -> GatewayState:
    gw: GatewayState = client.app.state.gw
    return gw


def test_a_held_pool_answers_busy_with_retry_after(tight: TestClient[Litestar]) -> None:
    gw = _gw(tight)
    url = f"/api/v1/telemetry/devices/{unique('busy')}/metrics"
    before = _refused(tight, "pool_busy")

    async def take_every_connection(stack: AsyncExitStack) -> None:
        for _ in range(gw.pool.max_size):
            await stack.enter_async_context(gw.pool.connection())

    with Held(tight, take_every_connection):
        r = tight.get(url, headers=HEADERS)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["detail"].startswith("the service is busy: all 2 database connections stayed in use for 0.3s")
    assert "unavailable" not in r.json()["detail"]
    assert _refused(tight, "pool_busy") == before + 1
    assert tight.get(url, headers=HEADERS).status_code == 200  # released: served again


def test_a_query_past_the_statement_timeout_is_cancelled_with_504(
    tight: TestClient[Litestar], servers: Servers
) -> None:
    gw = _gw(tight)

    async def sleep_in_the_pool() -> str:
        async with gw.pool.connection() as conn:  # every pooled connection carries the timeout
            try:
                await conn.execute("SELECT pg_sleep(3)")
            except QueryCanceled as exc:
                return str(exc)
        return "not cancelled"

    assert "statement timeout" in tight.blocking_portal.call(sleep_in_the_pool)
    before = _refused(tight, "statement_timeout")
    # A reader stuck behind a lock: the wait counts toward the statement timeout, as a slow plan would.
    with psycopg.connect(servers.database_url) as locker:
        locker.execute("LOCK TABLE telemetry.latest_values IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        r = tight.get(f"/api/v1/telemetry/devices/{unique('slow')}/metrics", headers=HEADERS)
        took = time.monotonic() - started
        locker.rollback()
    assert r.status_code == 504
    assert r.json()["detail"].startswith("the query ran longer than the statement timeout 1s")
    assert took < 10
    assert _refused(tight, "statement_timeout") == before + 1


def test_heavy_queries_queue_then_answer_busy_while_rollup_queries_pass(tight: TestClient[Litestar]) -> None:
    gw = _gw(tight)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    common = {"metric_name": unique("m"), "aggregation_type": "avg", "start_time": start.isoformat(),
              "end_time": end.isoformat()}  # fmt: skip
    raw = {**common, "interval": 7 * 3600 + 1}  # not a multiple of a rollup: read from raw points
    rollup = {**common, "interval": 3600}
    before = _refused(tight, "heavy_queue")

    async def take_the_slot(stack: AsyncExitStack) -> None:
        await stack.enter_async_context(gw.heavy.slot())

    with Held(tight, take_the_slot):
        r = tight.get("/api/v1/telemetry/aggregated", params=raw, headers=HEADERS)
        cheap = tight.get("/api/v1/telemetry/aggregated", params=rollup, headers=HEADERS)
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json()["detail"].startswith("the service is busy: 1 heavy queries")
    assert (cheap.status_code, cheap.json()["source"]) == (200, "rollup_hour")
    assert _refused(tight, "heavy_queue") == before + 1
    served = tight.get("/api/v1/telemetry/aggregated", params=raw, headers=HEADERS)
    assert (served.status_code, served.json()["source"]) == (200, "raw")


async def test_the_heavy_gate_queues_a_waiter_until_a_slot_frees() -> None:
    gate = HeavyQueries(concurrency=1, wait_s=5.0)
    order: list[str] = []

    async def second() -> None:
        async with gate.slot():
            order.append("second")

    async with gate.slot():
        waiter = asyncio.create_task(second())
        await eventually_async(lambda: asyncio.sleep(0, result=gate.waiting == 1), what="a waiter")
        order.append("first")
    await asyncio.wait_for(waiter, 5)
    assert order == ["first", "second"]
    assert (gate.running, gate.waiting) == (0, 0)
    short = HeavyQueries(concurrency=1, wait_s=0.05)
    async with short.slot():
        async with short.slot(heavy=False):  # a cheap query takes no slot and never waits
            order.append("cheap")
        with pytest.raises(ServiceBusy) as refused:
            async with short.slot():
                pass
    assert refused.value.retry_after_s == 1
    assert order[-1] == "cheap"
