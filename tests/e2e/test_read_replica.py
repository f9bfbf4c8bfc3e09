"""DATABASE_READ_URL: a gateway whose views read a real streaming replica, and whose writes wait for it.

The gateway runs in-process (a TestClient around create_app, like tests/integration/test_overload.py: no
second process to start) against the session's NATS, primary and worker processes.

The replica is a second PostgreSQL from the pgserver wheel, made by pg_basebackup of this session's primary
(tests/support/pg_replica.py). Pausing its WAL replay (pg_wal_replay_pause) makes it a lagging replica on
demand: a read that does NOT see what the primary has proves where reads go, and a write that does not answer
until replay resumes proves the read-your-writes wait polls the replica.
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import RequestFactory, TestClient

from gateway.app import create_app
from gateway.errors import handle_exception
from gateway.state import GatewayState
from telemetry_core.embedded import EmbeddedServer
from telemetry_core.settings import Settings
from tests.e2e.conftest import point, wait_latest
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.pg_replica import replay_paused, start_replica
from tests.support.servers import Servers, backend
from tests.support.stack import Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(backend() != "embedded", reason="the replica is made with the pgserver wheel's pg_basebackup"),
]


@pytest.fixture(scope="module")
def replica(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    start = time.monotonic()
    server = start_replica(servers.postgres.port, tmp_path_factory.mktemp("replica"))  # type: ignore[attr-defined]
    print(f"replica streaming {time.monotonic() - start:.2f}s after pg_basebackup started")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replica_gateway(replica: EmbeddedServer, stack: Stack) -> Iterator[TestClient[Litestar]]:
    """A gateway (in-process) on the session's servers reading from the replica; the session stack's workers write."""
    settings = Settings.from_env({"NATS_URL": stack.servers.nats_url, "DATABASE_URL": stack.servers.database_url,
                                  "DATABASE_READ_URL": replica.url, "TELEMETRY_API_KEYS": stack.api_key,
                                  "TELEMETRY_SIGNING_KEY": stack.signing_key,
                                  # Small pools, short waits: the busy-pool test holds every read connection.
                                  "TELEMETRY_DB_POOL_MAX": "4", "TELEMETRY_DB_TIMEOUT": "1"})  # fmt: skip
    with TestClient(app=create_app(settings), timeout=30) as client:
        client.headers.update(stack.headers)
        yield client


def replica_health(gateway: TestClient[Litestar]) -> dict[str, Any]:
    r = gateway.get("/health/detailed")
    assert r.status_code == 200, r.text
    return dict(r.json()["components"]["read_replica"])


def latest(gateway: TestClient[Litestar], device: str) -> httpx.Response:
    return gateway.get(f"/api/v1/telemetry/devices/{device}/metrics/temperature/latest")


def test_without_a_replica_health_says_not_configured(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/health/detailed", headers=stack.headers, timeout=10)
    assert r.json()["components"]["read_replica"]["status"] == "not_configured"


def test_reads_come_from_the_replica_and_health_shows_its_lag(
    replica: EmbeddedServer, replica_gateway: TestClient[Litestar], stack: Stack, client: httpx.Client
) -> None:
    device = unique("dev")
    assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=1)).status_code == 200
    eventually(lambda: latest(replica_gateway, device).status_code == 200, timeout=15, what="replica has point 1")
    assert eventually(lambda: replica_health(replica_gateway)["status"] == "healthy", what="replica healthy")
    replay_paused(replica.url, True)
    try:
        assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=2)).status_code == 200
        # The primary has it (the session gateway reads the primary) ...
        eventually(lambda: wait_latest(client, device, "temperature")["value"] == 2.0, what="primary has point 2")
        # ... the replica-reading gateway does not: its reads go to the replica.
        assert latest(replica_gateway, device).json()["value"] == 1.0
        health = eventually(lambda: (h := replica_health(replica_gateway))["metrics"]["replay_lag_bytes"] > 0 and h)
        print(f"replay lag while paused: {health['metrics']}")
        assert health["status"] == "lagging" and health["metrics"]["replay"] == "paused", health
    finally:
        replay_paused(replica.url, False)
    eventually(lambda: latest(replica_gateway, device).json()["value"] == 2.0, timeout=15, what="replica has point 2")
    health = eventually(lambda: (h := replica_health(replica_gateway))["status"] == "healthy" and h, what="healthy")
    assert health["metrics"]["wal_receiver"] == "streaming" and health["metrics"]["standby"] is True
    print(f"replay lag after resume: {health['metrics']}")


def test_a_create_answers_only_once_the_replica_shows_it(
    replica: EmbeddedServer, replica_gateway: TestClient[Litestar], servers: Servers
) -> None:
    name = unique("replicated")
    answer: dict[str, Any] = {}

    def create() -> None:
        r = replica_gateway.post("/api/v1/telemetry/metrics", json={"name": name, "data_type": "numeric"})
        answer.update(status=r.status_code, at=time.monotonic())

    def on(url: str) -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            sql = "SELECT 1 FROM telemetry.metric_definitions WHERE name = %s"
            return conn.execute(sql, (name,)).fetchone() is not None

    replay_paused(replica.url, True)
    writer = threading.Thread(target=create)
    try:
        writer.start()
        # The projection has applied the event on the primary: a gateway waiting on the primary would answer now.
        eventually(lambda: on(servers.database_url), timeout=5, what="definition on the primary")
        assert not on(replica.url)
        assert "status" not in answer, "the create answered before the replica showed the definition"
    finally:
        resumed_at = time.monotonic()
        replay_paused(replica.url, False)
        writer.join(30)
    assert answer["status"] == 201 and answer["at"] >= resumed_at, answer
    # Answered: a read on the replica sees it (the list reads the read model; a GET by name reads the cache).
    r = replica_gateway.get("/api/v1/telemetry/metrics", params={"limit": 1000})
    assert name in [m["name"] for m in r.json()["metrics"]]


def test_a_read_the_replica_cancels_is_a_503_to_retry(replica: EmbeddedServer, servers: Servers) -> None:
    """A hot standby cancels a read that holds up replay ("conflict with recovery"): 503 + Retry-After, not 500."""
    table = unique("conflict_probe")
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{table} (x int)".encode())  # a name made here, not input
    with psycopg.connect(replica.url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_standby_streaming_delay = 0")  # cancel at once instead of after 30 s
        conn.execute("SELECT pg_reload_conf()")
    cancelled: list[BaseException] = []

    def long_read() -> None:
        try:
            with psycopg.connect(replica.url, autocommit=True) as conn:
                conn.execute(f"SELECT pg_sleep(10), count(*) FROM public.{table}".encode())
        except psycopg.Error as exc:
            cancelled.append(exc)

    reader = threading.Thread(target=long_read)
    try:
        eventually(lambda: _exists_on(replica.url, table), what="table replicated")
        reader.start()
        eventually(lambda: _sleeping_on(replica.url), what="the read running on the replica")
        with psycopg.connect(servers.database_url) as conn:  # replaying this lock conflicts with the read
            conn.execute(f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE".encode())
        reader.join(15)
    finally:
        with psycopg.connect(replica.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_standby_streaming_delay")
            conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(servers.database_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE public.{table}".encode())
    assert len(cancelled) == 1 and "conflict with recovery" in str(cancelled[0]), cancelled
    response = handle_exception(RequestFactory().get("/api/v1/telemetry/query"), cancelled[0])  # type: ignore[arg-type]
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.content["detail"].startswith("the database cancelled the read (canceling statement due to")


def _exists_on(url: str, table: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone() == (True,)


def _sleeping_on(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(10), count(*)%%'"
        return conn.execute(sql).fetchone() == (1,)


def test_a_held_read_pool_answers_busy_and_leaves_the_primary_pool_alone(
    replica_gateway: TestClient[Litestar],
) -> None:
    gw: GatewayState = replica_gateway.app.state.gw
    assert gw.read_pool is not gw.pool and gw.read_pool.max_size == 4
    held, release = threading.Event(), threading.Event()

    async def hold_every_read_connection() -> None:
        async with AsyncExitStack() as connections:
            for _ in range(gw.read_pool.max_size):
                await connections.enter_async_context(gw.read_pool.connection())
            held.set()
            await asyncio.to_thread(release.wait, 30)

    holding = replica_gateway.blocking_portal.start_task_soon(hold_every_read_connection)
    try:
        assert held.wait(10)
        r = latest(replica_gateway, unique("dev"))
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.json()["detail"].startswith("the service is busy: all 4 database connections"), r.text
        assert replica_gateway.get("/health").status_code == 200  # the primary's pool is free
    finally:
        release.set()
        holding.result(10)
    assert latest(replica_gateway, unique("dev")).status_code == 404  # a connection again: no such series


def test_replica_down_reads_answer_503_writes_go_on_then_recover(
    replica: EmbeddedServer, replica_gateway: TestClient[Litestar], client: httpx.Client
) -> None:
    device = unique("dev")
    replica.kill()
    try:
        r = latest(replica_gateway, device)
        assert r.status_code == 503 and r.json()["detail"].startswith("PostgreSQL is unavailable"), r.text
        assert replica_health(replica_gateway)["status"] == "unhealthy"
        # Ingestion never touches the replica.
        url = f"/api/v1/telemetry/devices/{device}/telemetry"
        assert replica_gateway.post(url, json=point(value=7)).status_code == 200
    finally:
        replica.restart()
    # The pool reconnects by itself; the replica catches up with what was written meanwhile.
    eventually(lambda: latest(replica_gateway, device).status_code == 200, timeout=30, what="reads recover")
    assert latest(replica_gateway, device).json()["value"] == 7.0
