"""NATS or PostgreSQL down: clear 503s, bounded waits, and recovery without losing acknowledged points."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import point, wait_rows
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import start_servers
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("outage")
    servers = start_servers(root, durable=True)
    stack = Stack(servers, root / "logs").start_all()
    yield stack
    stack.stop_all()
    servers.stop()


def timed(fn: object) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = fn()  # type: ignore[operator]
    return response, time.monotonic() - start


def test_postgres_down_reads_503_writes_still_durable(own_stack: Stack) -> None:
    servers = own_stack.servers
    device = unique("dev")
    with httpx.Client(base_url=own_stack.url, headers=own_stack.headers, timeout=30) as client:
        servers.postgres.kill()
        r, took = timed(lambda: client.get(f"/api/v1/telemetry/devices/{device}/metrics"))
        assert r.status_code == 503
        assert r.json()["detail"].startswith("PostgreSQL is unavailable")
        assert took < 10
        health = httpx.get(f"{own_stack.url}/health", timeout=10)
        assert health.status_code == 503
        assert health.json()["detail"] == "PostgreSQL is unavailable"  # no driver error text on a public route
        # JetStream holds acknowledged points until the ingest worker can write them.
        r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=42))
        assert r.status_code == 200
        servers.restart("postgres")
        eventually(lambda: httpx.get(f"{own_stack.url}/health").status_code == 200, timeout=30, what="healthy")
    assert wait_rows(servers, device, 1, timeout=60)[0][3] == 42.0


def test_nats_down_writes_503_quickly_then_recover(own_stack: Stack) -> None:
    servers = own_stack.servers
    device = unique("dev")
    with httpx.Client(base_url=own_stack.url, headers=own_stack.headers, timeout=30) as client:
        servers.nats.kill()
        url = f"/api/v1/telemetry/devices/{device}/telemetry"
        r, took = timed(lambda: client.post(url, json=point(value=1)))
        assert r.status_code == 503
        assert r.json()["detail"].startswith("NATS")
        assert "retry" in r.json()["detail"]
        assert took < 10
        # Line protocol too: a 503 in InfluxDB's shape, so that Telegraf keeps the batch and retries.
        r = client.post("/api/v2/write", content=f"m,host={device} lp=1", params={"precision": "s"})
        assert (r.status_code, r.json()["code"]) == (503, "unavailable") and r.json()["message"].startswith("NATS")
        assert httpx.get(f"{own_stack.url}/health", timeout=10).status_code == 503
        servers.restart("nats")
        eventually(lambda: client.post(url, json=point(value=2)).status_code == 200, timeout=30, what="recovered")
    assert wait_rows(servers, device, 1, timeout=60)[0][3] == 2.0
