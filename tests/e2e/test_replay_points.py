"""`telemetry replay points --since`: points lost from PostgreSQL (a restore) come back from POINTS, later-wins kept."""

import asyncio
import subprocess
import sys

import httpx
import nats
import psycopg
import pytest

from ingest_worker.replay_points import replay_points as run_replay_points
from telemetry_core.settings import Settings
from telemetry_core.topology import NOTICES_STREAM, STORED_BATCH_SUBJECT
from telemetry_schemas.codecs import decode_notices
from telemetry_schemas.notices import PointsStored
from tests.e2e.conftest import point, wait_rows
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def replay_points(stack: Stack, since: str) -> str:
    done = subprocess.run([sys.executable, "-m", "telemetry_core.cli", "replay", "points", "--since", since],
                          env=stack.env(), capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_points_restores_lost_rows_later_write_winning(stack: Stack, servers: Servers) -> None:
    device = unique("rp")
    url = f"{stack.url}/api/v1/telemetry/devices/{device}/telemetry/batch"
    first = [point(value=1, ts="2026-02-01T00:00:00Z"), point(value=2, ts="2026-02-01T00:00:01Z")]
    assert httpx.post(url, json={"data_points": first}, headers=stack.headers).status_code == 200
    later = [point(value=9, ts="2026-02-01T00:00:00Z")]  # overwrites the first point
    assert httpx.post(url, json={"data_points": later}, headers=stack.headers).status_code == 200
    rows = wait_rows(servers, device, 2)
    assert eventually_value(servers, device) == [9.0, 2.0]
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        since = conn.execute("SELECT min(src_seq) FROM telemetry.points WHERE device_id = %s", (device,)).fetchone()
        # What a restore from an older backup looks like: the rows are gone, POINTS still has the messages.
        conn.execute("DELETE FROM telemetry.points WHERE device_id = %s", (device,))
    assert since is not None and len(rows) == 2
    out = replay_points(stack, str(since[0] - 1))
    assert "replay points:" in out and "re-persisted" in out
    assert [r[3] for r in wait_rows(servers, device, 2)] == [9.0, 2.0]  # the later write still wins
    # In-process the second time (no second interpreter start): idempotent, nothing was missing.
    settings = Settings(nats_url=servers.nats_url, database_url=servers.database_url, signing_key=stack.signing_key)
    again = asyncio.run(run_replay_points(settings, str(since[0]), out=None))
    assert (again.points, again.inserted) == (2, 0)
    assert [r[3] for r in wait_rows(servers, device, 2)] == [9.0, 2.0]
    # Its notices say the rollups were written with the points (write_rows does): no projection recomputes them
    # after the notice, and the gateways' query caches need not stop keeping answers (gateway/query_cache.py).
    notice = asyncio.run(last_notice(servers, device))
    assert notice.rollups_applied
    assert [m.count for m in notice.metrics] == [1]  # the later message: its one point


async def last_notice(servers: Servers, device: str) -> PointsStored:
    nc = await nats.connect(servers.nats_url)
    try:
        msg = await nc.jetstream().get_last_msg(NOTICES_STREAM, STORED_BATCH_SUBJECT)
    finally:
        await nc.close()
    assert msg.headers is not None and msg.headers.get("Nats-Msg-Id", "").startswith("replayed:")
    notices = [n for n in decode_notices(msg.data) if n.device_id == device]
    assert notices, f"the last notices message names no notice of {device}"
    return notices[-1]


def eventually_value(servers: Servers, device: str) -> list[float]:
    from tests.support.eventually import eventually

    def values() -> list[float] | None:
        got = [r[3] for r in wait_rows(servers, device, 2)]
        return got if got == [9.0, 2.0] else None

    return eventually(values, what="the later write stored")
