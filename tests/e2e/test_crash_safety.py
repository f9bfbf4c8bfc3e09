"""Nothing acknowledged is lost: SIGKILL each process in turn while a load of batches runs."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers, start_servers
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 200


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("crash")
    servers = start_servers(root)
    # A killed worker's unacknowledged batches come back after ack_wait: 5 s instead of 30 keeps the test short.
    stack = Stack(servers, root / "logs", extra_env={"TELEMETRY_ACK_WAIT": "5"}).start_all()
    yield stack
    stack.stop_all()
    servers.stop()


class Load:
    """Threads posting batches; remembers exactly which points were acknowledged (HTTP 200)."""

    def __init__(self, stack: Stack, devices: list[str]) -> None:
        self.stack = stack
        self.devices = devices
        self.acked: dict[tuple[str, datetime], float] = {}
        self.failures = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(d,)) for d in devices]

    def run(self, device: str) -> None:
        with httpx.Client(base_url=self.stack.url, headers=self.stack.headers, timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                times = [BASE + timedelta(seconds=n * BATCH + i) for i in range(BATCH)]
                body = {"data_points": [{"timestamp": t.isoformat(), "metric_name": "m", "value": n + i / 1000}
                                        for i, t in enumerate(times)]}  # fmt: skip
                try:
                    r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json=body)
                except httpx.HTTPError:
                    r = None
                with self.lock:
                    if r is not None and r.status_code == 200 and r.json()["ingested_count"] == BATCH:
                        self.acked.update({(device, t): n + i / 1000 for i, t in enumerate(times)})
                    else:
                        self.failures += 1
                n += 1

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def stored(servers: Servers, devices: list[str]) -> dict[tuple[str, datetime], float]:
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, time, value_num FROM telemetry.points WHERE device_id = ANY(%s)", (devices,)
        ).fetchall()
    return {(d, t): v for d, t, v in rows}


def counted(servers: Servers, devices: list[str]) -> dict[str, int]:
    """The statistics' points per device (stats_series): each stored point once, whatever was redelivered."""
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, points FROM telemetry.stats_series WHERE device_id = ANY(%s)", (devices,)
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize("victim", ["ingest-worker", "gateway", "projection-worker"])
def test_sigkill_loses_no_acknowledged_point(own_stack: Stack, victim: str) -> None:
    devices = [unique("dev") for _ in range(3)]
    with Load(own_stack, devices) as load:
        eventually(lambda: load.acked_count() >= 20 * BATCH, timeout=30, what="load running")
        own_stack.kill(victim)
        if victim != "gateway":  # with the gateway down nothing is acknowledged: keep loading meanwhile
            before = load.acked_count()
            eventually(lambda: load.acked_count() >= before + 10 * BATCH, timeout=30, what="acks while down")
        own_stack.start(victim)
        own_stack.wait_healthy()
        after = load.acked_count()
        eventually(lambda: load.acked_count() >= after + 10 * BATCH, timeout=30, what="acks after restart")
    acked = dict(load.acked)
    # Exactly once: every acknowledged point is stored with its value; rows are unique by primary key.
    eventually(lambda: set(acked) <= set(stored(own_stack.servers, devices)), timeout=60, what="all acked stored")
    rows = stored(own_stack.servers, devices)
    assert {k: rows[k] for k in acked} == acked
    # Rows beyond the acknowledged ones can only be points whose response was lost in the crash.
    assert len(rows) - len(acked) <= load.failures * BATCH
    # The statistics count every stored point once: a notice published again after a crash is not counted
    # again (projection_worker/stats_guard.py), nor skipped after the projection worker died holding it
    # (telemetry_core/consumer_reset.py).
    per_device = {d: sum(1 for dev, _ in rows if dev == d) for d in devices}
    eventually(lambda: counted(own_stack.servers, devices) == per_device, timeout=30, what="statistics caught up")
    latest = httpx.get(
        f"{own_stack.url}/api/v1/telemetry/devices/{devices[0]}/metrics/m/latest",
        params={"lookback": "36500d"},
        headers=own_stack.headers,
    )
    newest = max(t for d, t in rows if d == devices[0])
    eventually(
        lambda: (
            httpx.get(latest.url, headers=own_stack.headers).json().get("timestamp")
            == newest.isoformat().replace("+00:00", "Z")
        ),
        timeout=30,
        what="latest value caught up",
    )
