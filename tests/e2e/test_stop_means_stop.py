"""Stop means stop: every worker SIGTERMed while PostgreSQL is down, with work in hand, exits within 5 s."""

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest

from ingest_worker.notices import build_notice
from telemetry_core.topology import stored_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.values import Point
from tests.e2e.conftest import point
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import start_servers
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
WORKERS = ("ingest-worker", "projection-worker", "alert-worker")


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Private servers: this test kills PostgreSQL, which the session's shared servers must survive.
    root: Path = tmp_path_factory.mktemp("stop")
    servers = start_servers(root)
    stack = Stack(servers, root / "logs").start_all()
    yield stack
    stack.stop_all()
    servers.stop()


async def _publish_notice(nats_url: str, device: str) -> None:
    """A stored-notice for the projections to apply (the ingest worker cannot write one without PostgreSQL)."""
    nc = await nats.connect(nats_url)
    try:
        notice = build_notice(device, 1, [Point(timestamp=datetime.now(UTC), metric_name="t", value=1.0)])
        await nc.jetstream().publish(stored_subject(device), json_encoder.encode(notice), timeout=5)
    finally:
        await nc.close()


def _log_has(stack: Stack, label: str, text: str) -> bool:
    return text in (stack.log_dir / f"{label}.log").read_text()


def test_a_standby_alert_engine_sigtermed_while_waiting_for_its_partition_exits_at_once(own_stack: Stack) -> None:
    # Runs first: it needs PostgreSQL up (the standby waits on the partition's advisory lock there).
    own_stack.start("alert-worker", "alert-standby")
    standby = own_stack.procs["alert-standby"]
    eventually(lambda: _log_has(own_stack, "alert-standby", "partition_taken_waiting_as_standby"), timeout=30,
               what="standby waiting")  # fmt: skip
    standby.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert standby.wait(10) == 0
    assert time.monotonic() - started < 5.0


def test_workers_sigtermed_while_postgres_is_down_exit_within_5s(own_stack: Stack) -> None:
    servers, device = own_stack.servers, unique("dev")
    servers.postgres.kill()
    # Work in every worker's hands: a point (ingest worker, alert engine) and a stored notice (projections).
    with httpx.Client(base_url=own_stack.url, headers=own_stack.headers, timeout=30) as client:
        assert client.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=1)).status_code == 200
    asyncio.run(_publish_notice(servers.nats_url, device))
    # Each is now retrying against the dead PostgreSQL, or has noticed that its lock went with PostgreSQL and is
    # exiting by itself, which may come first: both are checked below.
    waits = {"projection-worker": ("transient_failure_will_retry", "partition_lock_lost"),
             "alert-worker": ("transient_failure_will_retry", "partition_lock_lost")}  # fmt: skip
    for name, marks in waits.items():
        eventually(lambda n=name, m=marks: any(_log_has(own_stack, n, mark) for mark in m),
                   timeout=40, what=f"{name} retrying")  # fmt: skip
    for name in WORKERS:
        own_stack.procs[name].send_signal(signal.SIGTERM)
    started, took = time.monotonic(), {}
    for name in WORKERS:
        with contextlib.suppress(subprocess.TimeoutExpired):
            own_stack.procs[name].wait(max(0.1, started + 10 - time.monotonic()))
        took[name] = time.monotonic() - started if own_stack.procs[name].poll() is not None else None
    assert all(t is not None and t < 5.0 for t in took.values()), (took, own_stack.log_tail("projection-worker"))
    codes = {name: own_stack.procs[name].returncode for name in WORKERS}
    # The alert engine's partition lock and the projection worker's lock (only one copy applies) live on a
    # PostgreSQL connection: with it gone the worker cannot prove it still holds the lock and exits by itself,
    # non-zero (by design: a supervisor restarts it as a standby); the SIGTERM may land while it is exiting.
    for name, said in (("alert-worker", "lost the partition lock"), ("projection-worker", "lost the projections lock")):
        if _log_has(own_stack, name, "partition_lock_lost"):
            assert codes.pop(name) in (0, 1, -signal.SIGTERM)
            assert _log_has(own_stack, name, said)
    assert codes == {name: 0 for name in codes}
    for name in WORKERS:
        assert "shutdown_overdue_exiting_hard" not in (own_stack.log_dir / f"{name}.log").read_text()
