"""The clustered shape under faults: nothing acknowledged is lost, nothing is stored or alerted twice.

Three nats-server nodes (R3 streams) and two copies of every process, on loopback. Under a steady load of
batches through both gateways: SIGKILL the node leading POINTS, then start it again; SIGKILL one ingest
worker, the active projection worker and the active alert engine (their standbys take over). Then every
acknowledged point is stored once with its value, latest values are what the points give, and each
breaching device has exactly one alert. The 503s seen while the node was down are printed (-s shows them).
"""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.cluster import ClusterStack, detailed_cluster, start_cluster_stack
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BATCH = 50
HOT, COLD = 95.0, 10.0  # the rule fires above 90


@pytest.fixture(scope="module")
def cluster_stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    root: Path = tmp_path_factory.mktemp("cluster")
    running = start_cluster_stack(root, servers.database_url)
    yield running
    running.stop()


@dataclass
class Load:
    """One thread per device posting batches, alternating between the gateways; remembers what was acknowledged."""

    urls: list[str]
    headers: dict[str, str]
    devices: dict[str, float]  # device → the value it always sends
    start: datetime
    acked: dict[tuple[str, datetime], float] = field(default_factory=dict)
    unavailable: list[float] = field(default_factory=list)  # monotonic times of 503 answers
    other_failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, device: str, value: float) -> None:
        clients = [httpx.Client(base_url=u, headers=self.headers, timeout=10) for u in self.urls]
        n = 0
        while not self.stop.is_set():
            # Milliseconds apart, in the recent past: every batch holds new points, all inside the engine's lateness.
            times = [self.start + timedelta(milliseconds=n * BATCH + i) for i in range(BATCH)]
            body = {"data_points": [{"timestamp": t.isoformat(), "metric_name": "m", "value": value} for t in times]}
            try:
                r = clients[n % 2].post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json=body)
            except httpx.HTTPError as exc:
                r, error = None, repr(exc)
            with self.lock:
                if r is not None and r.status_code == 200 and r.json()["ingested_count"] == BATCH:
                    self.acked.update(dict.fromkeys(((device, t) for t in times), value))
                elif r is not None and r.status_code == 503:
                    self.unavailable.append(time.monotonic())
                else:
                    self.other_failures.append(error if r is None else f"{r.status_code} {r.text[:200]}")
            n += 1
        for c in clients:
            c.close()

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def more_acks(self, count: int, what: str, timeout: float = 30) -> None:
        before = self.acked_count()
        eventually(lambda: self.acked_count() >= before + count * BATCH, timeout=timeout, what=what)

    def __enter__(self) -> "Load":
        self.threads = [threading.Thread(target=self.run, args=item) for item in self.devices.items()]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_node_and_process_kills_lose_nothing_and_alert_once(cluster_stack: ClusterStack) -> None:
    cs, headers = cluster_stack, cluster_stack.stack.headers
    rules = "/api/v1/telemetry/alerts/rules"
    body = {"name": "hot", "metric_name": "m", "condition": ">", "threshold_value": 90}
    rule = httpx.post(cs.urls[0] + rules, json=body, headers=headers, timeout=10)
    assert rule.status_code == 201, rule.text
    devices = {unique("hot"): HOT, unique("hot"): HOT, unique("cold"): COLD, unique("cold"): COLD}
    load = Load(cs.urls, headers, devices, datetime.now(UTC) - timedelta(seconds=120))
    with load:
        load.more_acks(4, "load running")
        leader = cs.stream_leader("POINTS")
        killed_at = time.monotonic()
        leader.kill()
        load.more_acks(6, "acks with the POINTS leader down")  # a new leader was elected; writes go on
        leader.restart()
        ingest = "ingest-worker-0"
        projection = cs.label_of(cs.holder_pid("projection-worker"))
        engine = cs.label_of(cs.holder_pid("alerts_0_of_1"))
        for label in (ingest, projection, engine):
            cs.stack.kill(label)
        load.more_acks(6, "acks after the process kills")
    during = [t - killed_at for t in load.unavailable]
    print(f"\n503s during the node loss: {len(during)}, window {max(during, default=0) - min(during, default=0):.2f}s "
          f"(first {min(during, default=0):.2f}s after the kill); acknowledged points {len(load.acked)}")  # fmt: skip
    assert not load.other_failures, load.other_failures[:5]
    acked = dict(load.acked)
    names = list(devices)
    # Exactly once, with its value: rows are unique per (device, metric, time), and each acknowledged one is there.
    eventually(lambda: set(acked) <= set(_stored(cs, names)), timeout=60, what="every acknowledged point stored")
    stored = _stored(cs, names)
    assert {k: stored[k] for k in acked} == acked
    # Unacknowledged rows can only come from 503'd requests that JetStream stored after all.
    assert len(stored) - len(acked) <= len(load.unavailable) * BATCH
    # Latest values: what the stored points give (the newest point of each device).
    newest = {d: max(t for dd, t in stored if dd == d) for d in names}
    eventually(lambda: _latest(cs, names) == {d: (newest[d], devices[d]) for d in names}, timeout=60,
               what="latest values caught up")  # fmt: skip
    # One alert per breaching device, none for the others, after the standby engine took over.
    hot = sorted(d for d, v in devices.items() if v == HOT)
    eventually(lambda: _alerted(cs, rule.json()["rule_id"]) == hot, timeout=60, what="one alert per hot device")
    # The restarted node is back: every stream has a leader and all three replicas current.
    # (The gateway's server lists the restarted node again once the routes gossip it: polled too.)
    cluster = eventually(lambda: (c := detailed_cluster(cs.urls[1], headers))["status"] == "healthy"
                         and not c["detail"] and c["metrics"]["servers"]["size"] == 3 and c, timeout=60,
                         what="cluster healthy again")  # fmt: skip
    assert all(len(s["current"]) == 2 and s["replicas"] == 3 for s in cluster["metrics"]["streams"].values())


def _stored(cs: ClusterStack, devices: list[str]) -> dict[tuple[str, datetime], float]:
    with psycopg.connect(cs.stack.servers.database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, time, value_num FROM telemetry.points WHERE device_id = ANY(%s)", (devices,)
        ).fetchall()
    return {(d, t): v for d, t, v in rows}


def _latest(cs: ClusterStack, devices: list[str]) -> dict[str, tuple[datetime, float]]:
    with psycopg.connect(cs.stack.servers.database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, time, value_num FROM telemetry.latest_values WHERE device_id = ANY(%s) "
            "AND metric_name = 'm'",
            (devices,),
        ).fetchall()
    return {d: (t, v) for d, t, v in rows}


def _alerted(cs: ClusterStack, rule_id: str) -> list[str]:
    """Devices with an alert of the rule, one entry per alert (a duplicate would show twice)."""
    with psycopg.connect(cs.stack.servers.database_url) as conn:
        rows = conn.execute("SELECT device_id FROM telemetry.alerts WHERE rule_id = %s", (rule_id,)).fetchall()
    return sorted(d for (d,) in rows)
