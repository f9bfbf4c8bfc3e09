"""A stream created again behind running consumers' backs stops them loudly; it never makes them skip.

Real NATS, PostgreSQL and worker processes of their own (the streams are deleted here). Without the guard
(telemetry_core/stream_guard.py) the metric_definitions projection's checkpoint (3) would cover the new
stream's first event (sequence 1): the definition would be acknowledged by the API and never applied.
"""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
import pytest

from telemetry_core.settings import Settings
from telemetry_core.topology import EVENTS_STREAM, POINTS_STREAM, ensure_topology
from tests.e2e.conftest import now_iso, point
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import start_servers
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
METRICS = "/api/v1/telemetry/metrics"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("stream-guard")
    servers = start_servers(root)
    stack = Stack(servers, root / "logs").start_all()
    yield stack
    stack.stop_all()
    servers.stop()


@pytest.fixture
def client(own_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_stack.url, headers=own_stack.headers, timeout=30) as c:
        yield c


def recreate_stream(stack: Stack, stream: str) -> None:
    """Delete ``stream`` and let the topology create it (and its consumers) again, empty: sequences restart at 1."""

    async def run() -> None:
        nc = await nats.connect(stack.servers.nats_url)
        try:
            js = nc.jetstream()
            await js.delete_stream(stream)
            await ensure_topology(js, Settings.from_env(stack.env()))
        finally:
            await nc.close()

    asyncio.run(run())


def checkpoint_row(stack: Stack, consumer: str, stream: str) -> tuple[int, Any, str | None] | None:
    with psycopg.connect(stack.servers.database_url) as conn:
        row = conn.execute(
            "SELECT last_seq, stream_created, halted FROM telemetry.projection_checkpoints "
            "WHERE projection = %s AND stream = %s",
            (consumer, stream),
        ).fetchone()
    return None if row is None else (int(row[0]), row[1], row[2])


def halted_in_health(client: httpx.Client, consumer: str) -> dict[str, Any] | None:
    component = client.get("/health/detailed").json()["components"]["checkpoints"]
    if component["status"] != "unhealthy":
        return None
    return component["metrics"]["halted"].get(consumer)


def defined(stack: Stack, name: str) -> bool:
    with psycopg.connect(stack.servers.database_url) as conn:
        row = conn.execute("SELECT 1 FROM telemetry.metric_definitions WHERE name = %s", (name,)).fetchone()
    return row is not None


def log_events(stack: Stack, label: str, event: str) -> list[dict[str, Any]]:
    lines = (stack.log_dir / f"{label}.log").read_text(errors="replace").splitlines()
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == event:
            found.append(record)
    return found


def replay(stack: Stack, name: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "telemetry_core.cli", "replay", name],
        env=stack.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_projection_stops_when_its_stream_is_created_again_and_resumes_after_replay(
    own_stack: Stack, client: httpx.Client
) -> None:
    before = [unique("m") for _ in range(3)]
    for name in before:
        assert client.post(METRICS, json={"name": name, "data_type": "numeric"}).status_code == 201
    position = checkpoint_row(own_stack, "metric_definitions", EVENTS_STREAM)
    assert position is not None
    assert position[0] >= 3
    assert position[1] is not None  # the stream it counts in is recorded

    recreate_stream(own_stack, EVENTS_STREAM)
    after = unique("m")
    # The gateway accepts it (the event is in the new stream at a sequence the old checkpoint covers) ...
    assert client.post(METRICS, json={"name": after, "data_type": "numeric"}).status_code == 201

    # ... and the projection stops, says why in /health/detailed and in its log, and applies nothing.
    halted = eventually(lambda: halted_in_health(client, "metric_definitions"), timeout=60)
    assert halted["stream"] == EVENTS_STREAM
    assert "created again" in halted["reason"]
    assert "telemetry replay metric_definitions" in halted["reason"]
    errors = eventually(lambda: log_events(own_stack, "projection-worker", "consumer_stopped_stream_changed"))
    assert errors[0]["level"] == "error"
    assert errors[0]["consumer"] == "metric_definitions"
    assert not defined(own_stack, after)
    # The process lives on, and projections of other streams go on (latest values come from NOTICES).
    assert own_stack.procs["projection-worker"].poll() is None
    device = unique("d")
    assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=7.0, ts=now_iso())).is_success
    latest = eventually(
        lambda: (
            (r := client.get(f"/api/v1/telemetry/devices/{device}/metrics/temperature/latest")).status_code == 200
            and r.json()
        ),
        timeout=30,
    )
    assert latest["value"] == 7.0

    # The fix it names: replay rebuilds from the stream as it is now; the worker resumes without a restart.
    assert "reset" in replay(own_stack, "metric_definitions")
    eventually(lambda: defined(own_stack, after), timeout=60)
    assert not any(defined(own_stack, name) for name in before)  # they were in the stream that is gone
    eventually(lambda: halted_in_health(client, "metric_definitions") is None, timeout=30)
    row = checkpoint_row(own_stack, "metric_definitions", EVENTS_STREAM)
    assert row is not None
    assert row[2] is None


def test_alert_engine_exits_when_points_is_created_again(own_stack: Stack, client: httpx.Client) -> None:
    engine = "alerts_0_of_1"
    device = unique("d")
    for value in (1.0, 2.0, 3.0):
        r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=value, ts=now_iso()))
        assert r.status_code == 200
    eventually(lambda: (row := checkpoint_row(own_stack, engine, POINTS_STREAM)) is not None and row[0] >= 3)

    recreate_stream(own_stack, POINTS_STREAM)
    assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=4.0)).status_code == 200

    proc = own_stack.procs["alert-worker"]
    eventually(lambda: proc.poll() is not None, timeout=60)
    assert proc.returncode != 0
    halted = eventually(lambda: halted_in_health(client, engine), timeout=30)
    assert f"telemetry replay {engine}" in halted["reason"]
    assert log_events(own_stack, "alert-worker", "consumer_stopped_stream_changed")

    # Started again without the fix, it stops again at start-up: the halt holds until the replay.
    own_stack.start("alert-worker")
    eventually(lambda: own_stack.procs["alert-worker"].poll() is not None, timeout=60)
    assert "reset" in replay(own_stack, engine)
    own_stack.start("alert-worker")
    eventually(lambda: halted_in_health(client, engine) is None, timeout=30)
    assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=5.0)).status_code == 200
    row = eventually(lambda: (r := checkpoint_row(own_stack, engine, POINTS_STREAM)) and r[0] >= 2 and r, timeout=60)
    assert row[2] is None
    assert own_stack.procs["alert-worker"].poll() is None
