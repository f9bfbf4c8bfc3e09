"""The clustered shape for tests and the cluster benchmark: a 3-node NATS JetStream cluster with R3 streams,
a database of its own, and two copies of every process (as `telemetry run --cluster 3` starts them).

The database is a fresh one on an already running PostgreSQL (the session's), not a new server: that saves
a server start, and the cluster's consumers and locks never meet the shared stack's.
"""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg
from psycopg import sql

from telemetry_core.embedded import EmbeddedServer, free_port
from telemetry_core.migrate import migrate
from telemetry_core.nats_cluster import NatsCluster, create_topology, start_nats_cluster
from telemetry_core.settings import Settings
from tests.support.ids import unique
from tests.support.stack import Stack


def fresh_database(database_url: str) -> str:
    """Create an empty, migrated database on the server of ``database_url``; return its URL."""
    name = unique("cluster").replace("-", "_")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    return url


@dataclass
class ClusterServers:
    """What Stack needs of its servers (nats_url, database_url), for a cluster."""

    cluster: NatsCluster
    database_url: str

    @property
    def nats_url(self) -> str:
        return self.cluster.url


@dataclass
class ClusterStack:
    """Two copies of every process on a NATS cluster; ``stack`` starts, kills and logs them by label."""

    cluster: NatsCluster
    stack: Stack
    gateway_ports: tuple[int, int]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.gateway_ports]

    def holder_pid(self, lock_name: str) -> int:
        """The pid of the process holding the named partition lock (telemetry_core/partition_lock.py)."""
        with psycopg.connect(self.stack.servers.database_url) as conn:
            rows = conn.execute(
                # This database's locks only: the session's other stacks share the PostgreSQL server, and their
                # projection workers hold the same-named lock in their own databases.
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (f"telemetry-lock-%-{lock_name}",),
            ).fetchall()
        assert len(rows) == 1, rows
        return int(rows[0][0].split("-")[2])

    def label_of(self, pid: int) -> str:
        return next(label for label, proc in self.stack.procs.items() if proc.pid == pid)

    def stream_leader(self, stream: str) -> EmbeddedServer:
        """The node leading ``stream`` now."""
        return self.cluster.node(asyncio.run(_leader(self.cluster.url, stream)))

    def stop(self) -> None:
        self.stack.stop_all()
        self.cluster.stop()


async def _leader(url: str, stream: str) -> str:
    nc = await nats.connect(url.split(","), connect_timeout=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream)
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader, info.cluster
    return info.cluster.leader


def start_cluster_stack(
    root: Path, database_url: str, size: int = 3, mqtt_credentials: tuple[str, str] | None = None, **extra_env: str
) -> ClusterStack:
    """Start the cluster, create the R3 topology once, then two copies of each process; wait until served.

    With ``mqtt_credentials`` every node also opens an MQTT listener (free ports) that devices sign in to with
    them, as `telemetry run --cluster` does with TELEMETRY_MQTT_USERNAME / _PASSWORD.
    """
    mqtt_ports = [free_port() for _ in range(size)] if mqtt_credentials else None
    cluster = start_nats_cluster(root / "nats", size, mqtt_ports=mqtt_ports, mqtt_credentials=mqtt_credentials)
    try:
        replicas = 3 if size >= 3 else 1
        env = {"TELEMETRY_STREAM_REPLICAS": str(replicas), **extra_env}
        create_topology(cluster.url, Settings(stream_replicas=replicas))
        ports = (free_port(), free_port())
        stack = Stack(ClusterServers(cluster, fresh_database(database_url)), root / "logs", port=ports[0],  # type: ignore[arg-type]
                      extra_env=env)  # fmt: skip
        for copy in ("0", "1"):
            stack.start("projection-worker", f"projection-worker-{copy}")
            stack.start("ingest-worker", f"ingest-worker-{copy}")
            stack.start("alert-worker", f"alert-worker-{copy}")  # partition 0 of 1: one evaluates, one stands by
        stack.start("gateway", "gateway-0")
        stack.start("gateway", "gateway-1", TELEMETRY_PORT=str(ports[1]))
        running = ClusterStack(cluster, stack, ports)
        for url in running.urls:
            wait_served(url, stack)
    except BaseException:
        if "stack" in locals():
            stack.stop_all()
        cluster.stop()
        raise
    return running


def wait_served(url: str, stack: Stack, timeout: float = 90.0) -> None:
    """Until ``url``/health answers 200; a process that exits meanwhile fails at once with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for label, proc in stack.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{label} exited with {proc.returncode}:\n{stack.log_tail(label)}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy within {timeout}s")


def detailed_cluster(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """The nats_cluster component of /health/detailed."""
    return dict(httpx.get(f"{url}/health/detailed", headers=headers, timeout=5).json()["components"]["nats_cluster"])
