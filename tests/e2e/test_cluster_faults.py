"""The clustered shape under faults: nothing acknowledged is lost, nothing is stored or alerted twice.

Three nats-server nodes (R3 streams) and two copies of every process, on loopback. Under a steady load of
batches through both gateways: SIGKILL the node leading POINTS, then start it again; SIGKILL one ingest
worker, the active projection worker and the active alert engine (their standbys take over). Then every
acknowledged point is stored once with its value, and each breaching device has exactly one alert. The read
models equal a fresh replay, row by row: rollup_minute / rollup_hour (merged in the ingest transaction) equal
their recompute from the raw points (tests/support/read_models.py), latest_values is the newest stored point
of each (device, metric), and `telemetry replay`'s own rebuild of latest_values and rollups from NOTICES
sequence 1 (in the shadow schema, rolled back instead of swapped in: tests/support/dry_replay.py) differs from
the live tables in no row. tests/integration/test_read_model_comparison.py and test_dry_replay.py show that
each comparison names a corrupted row. The 503s seen while the node was down are printed (-s shows them).

The nodes also accept MQTT devices, each on its own port with the sign-in (as `telemetry run --cluster` opens
them): after the faults, a point published to every node, the restarted one included, is stored, and MQTT's
own session stream has three replicas (nats-server left alone makes it R2, which one node's loss stops).
"""

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, LiteralString

import httpx
import nats
import psycopg
import pytest

from projection_worker.online_replay import by_name
from tests.support.cluster import ClusterStack, detailed_cluster, start_cluster_stack
from tests.support.dry_replay import replay_differences
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.mqtt import connack_reason, mqtt_device
from tests.support.read_models import LATEST, METRIC_HOURS, latest_mismatches, rollup_mismatches
from tests.support.servers import Servers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BATCH = 50
HOT, COLD = 95.0, 10.0  # the rule fires above 90
MQTT_SIGN_IN = ("device", unique("mqtt-password-"))  # ≥ 16 characters, as settings require


@pytest.fixture(scope="module")
def cluster_stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    root: Path = tmp_path_factory.mktemp("cluster")
    # The killed ingest worker's unacknowledged batches come back after ack_wait: 5 s instead of 30.
    running = start_cluster_stack(root, servers.database_url, mqtt_credentials=MQTT_SIGN_IN, TELEMETRY_ACK_WAIT="5")
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
    # Read models equal a fresh replay. Rollups are merged in the ingest transaction: equal to the raw points'
    # recompute in any snapshot. The projections follow by a moment: polled, the rebuild compares only once the
    # live model is exactly at the stream's end (it raises otherwise), and changes nothing live.
    database_url = cs.stack.servers.database_url
    assert rollup_mismatches(database_url, names) == []
    eventually(lambda: _none(latest_mismatches(database_url, names)), timeout=60, what="latest values = raw points")
    assert _replay_differences(cs, "latest_values", LATEST, (names,)) == []
    assert _replay_differences(cs, "rollups", METRIC_HOURS, ()) == []  # the test's metric is this database's only one
    # One alert per breaching device, none for the others, after the standby engine took over.
    hot = sorted(d for d, v in devices.items() if v == HOT)
    try:
        eventually(
            lambda: _same(_alerted(cs, rule.json()["rule_id"]), hot), timeout=60, what="one alert per hot device"
        )
    except AssertionError as exc:  # say what the engines did: a copy that exited, a takeover that stalled
        raise AssertionError(f"{exc}\n{_engines(cs)}") from None
    # The restarted node is back: every stream has a leader and all three replicas current.
    # (The gateway's server lists the restarted node again once the routes gossip it: polled too.)
    cluster = eventually(lambda: (c := detailed_cluster(cs.urls[1], headers))["status"] == "healthy"
                         and not c["detail"] and c["metrics"]["servers"]["size"] == 3 and c, timeout=60,
                         what="cluster healthy again")  # fmt: skip
    assert all(len(s["current"]) == 2 and s["replicas"] == 3 for s in cluster["metrics"]["streams"].values())


def test_every_node_takes_mqtt_points_after_the_faults(cluster_stack: ClusterStack) -> None:
    # Runs after the fault test when the whole file runs (then the killed node is the restarted one), or alone.
    cs = cluster_stack
    assert len(cs.cluster.mqtt_urls) == 3
    sent: dict[str, float] = {}
    for i, url in enumerate(cs.cluster.mqtt_urls):
        device, port = unique("mqtt"), int(url.rsplit(":", 1)[1])
        assert connack_reason(port, (MQTT_SIGN_IN[0], "a-wrong-password-of-length")).is_failure  # sign-in on each
        with mqtt_device(port, credentials=MQTT_SIGN_IN) as mqtt:
            when = datetime.now(UTC).isoformat()
            mqtt.publish_points(device, [{"timestamp": when, "metric_name": "m", "value": 40.0 + i}])
        sent[device] = 40.0 + i
    eventually(lambda: {d: v for (d, _t), v in _stored(cs, list(sent)).items()} == sent, timeout=30,
               what="each node's MQTT point stored")  # fmt: skip
    # MQTT keeps its sessions in streams of its own (made at the first MQTT connection), replicated like the
    # service's. Left to nats-server they were R2 on three nodes: with either of those two nodes down, no node
    # signed any device in (no CONNACK within 15 s); R3 took them in again after 12-13 s (docs/scaling.md).
    # Killing a node here to show it would cost those seconds in every run: the replicas are what decides it.
    replicas, followers = asyncio.run(_replication(cs.cluster.url, "$MQTT_sess"))
    assert (replicas, len(followers)) == (3, 2)


async def _replication(url: str, stream: str) -> tuple[int, list[str]]:
    """The stream's replicas and its followers' server names."""
    nc = await nats.connect(url.split(","), connect_timeout=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)
    finally:
        await nc.close()
    assert info.cluster is not None, info
    return int(info.config.num_replicas or 1), [peer.name for peer in info.cluster.replicas or []]


def _none(differences: list[str]) -> bool:
    """True when there are no differences; else an AssertionError naming them (what eventually reports last)."""
    assert not differences, differences[:5]
    return True


def _replay_differences(cs: ClusterStack, name: str, query: LiteralString, params: Sequence[Any]) -> list[str]:
    """The rows of projection ``name`` a rebuild from its stream would change (tests/support/dry_replay.py).

    Tried again while the live model is not exactly at the stream's end (the comparison raises then).
    """
    (projection,) = by_name(name)

    def attempt() -> tuple[list[str]]:  # a 1-tuple: truthy with or without differences, which are final
        return (asyncio.run(replay_differences(cs.cluster.url, cs.stack.servers.database_url, projection, query, 2,
                                               params)),)  # fmt: skip

    return eventually(attempt, timeout=60, what=f"{name}: the live model at its stream's end")[0]


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


def _same(got: list[str], want: list[str]) -> bool:
    """True when equal; else an AssertionError that ``eventually`` reports with both lists."""
    assert got == want, f"alerted {got}, expected {want}"
    return True


def _engines(cs: ClusterStack) -> str:
    """Each alert engine copy: running or its exit code, and its last log lines but the per-batch ones."""
    out = []
    for label, proc in cs.stack.procs.items():
        if "alert" in label:
            lines = [ln for ln in cs.stack.log_tail(label, 100_000).splitlines() if '"batch_handled"' not in ln]
            out += [f"--- {label}: {'running' if proc.poll() is None else f'exited {proc.returncode}'}", *lines[-15:]]
    return "\n".join(out)


def _alerted(cs: ClusterStack, rule_id: str) -> list[str]:
    """Devices with an alert of the rule, one entry per alert (a duplicate would show twice)."""
    with psycopg.connect(cs.stack.servers.database_url) as conn:
        rows = conn.execute("SELECT device_id FROM telemetry.alerts WHERE rule_id = %s", (rule_id,)).fetchall()
    return sorted(d for (d,) in rows)
