"""`telemetry run --cluster N`: the clustered shape on one machine, on loopback.

N nats-server nodes form a JetStream cluster (nats_cluster.py) and every stream gets replicas
(TELEMETRY_STREAM_REPLICAS, else 3 on 3+ nodes); two copies of each process run against it: gateways on
TELEMETRY_PORT and the next port, ingest workers sharing their consumer, projection workers as active
and standby, and an active and a standby alert engine per partition. Everything is supervised and
restarted like `telemetry run` (devrun.py), whose helpers this reuses.

MQTT devices: every node opens its own MQTT listener, node i on TELEMETRY_MQTT_PORT + i (1883, 1884, 1885),
with the sign-in of TELEMETRY_MQTT_USERNAME / _PASSWORD like the single node. One listener per node rather
than one for all: a device keeps a list of brokers and reconnects to another when its node dies, as NATS
clients do with NATS_URL; a single MQTT node would be the one point whose loss stops MQTT ingest.
"""

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from telemetry_core.devrun import _wait_healthy, dev_api_key, dev_signing_key, prepare_run, say
from telemetry_core.embedded import EmbeddedServer, start_postgres
from telemetry_core.errors import ConfigurationError
from telemetry_core.migrate import migrate
from telemetry_core.nats_cluster import NatsCluster, create_topology, node_name, start_nats_cluster
from telemetry_core.replicas import resolve_replicas
from telemetry_core.settings import Settings
from telemetry_core.supervisor import Child, ServerUnit, Supervised, Supervisor

# Copies of each process: one can die (or be restarted) while the other serves.
COPIES = 2


@dataclass
class NodeUnit(ServerUnit):
    """A cluster node as a supervised process, named after its server_name."""

    index: int = 0

    @property
    def name(self) -> str:
        """The node's server_name (what /health/detailed calls a stream's leader or replica)."""
        return node_name(self.index)


def process_plan(settings: Settings, copies: int = COPIES) -> list[tuple[str, str, dict[str, str]]]:
    """(label, subcommand, extra environment) of every process to start, gateways last."""
    plan: list[tuple[str, str, dict[str, str]]] = []
    for copy in range(copies):
        plan.append((f"projection-worker-{copy}", "projection-worker", {}))
    for copy in range(copies):
        plan.append((f"ingest-worker-{copy}", "ingest-worker", {}))
    partitions = settings.alert_partitions
    for partition in range(partitions):
        for copy in range(copies):  # the first to take the partition's lock evaluates; the other stands by
            env = {"TELEMETRY_ALERT_PARTITION": str(partition), "TELEMETRY_ALERT_PARTITIONS": str(partitions)}
            plan.append((f"alert-worker-{partition}-{copy}", "alert-worker", env))
    for copy in range(copies):
        plan.append((f"gateway-{copy}", "gateway", {"TELEMETRY_PORT": str(settings.port + copy)}))
    return plan


def start_cluster_servers(settings: Settings, data_dir: Path, size: int) -> tuple[NatsCluster, int]:
    """Check the replicas asked for fit ``size`` nodes, then start the nodes; return them and the replicas."""
    if settings.nats_url is not None:
        raise ConfigurationError("--cluster starts its own NATS cluster: unset NATS_URL")
    replicas = resolve_replicas(settings.stream_replicas, size)  # refuses R > size before anything starts
    sync = settings.nats_sync_interval
    say(f"starting a {size}-node NATS JetStream cluster (data in {data_dir / 'nats-cluster'}, streams R{replicas})")
    mqtt = mqtt_options(settings, size, replicas)
    cluster = start_nats_cluster(data_dir / "nats-cluster", size, sync_interval=sync, **mqtt)
    create_topology(cluster.url, replace(settings, stream_replicas=replicas))
    return cluster, replicas


def mqtt_options(settings: Settings, size: int, replicas: int) -> dict[str, Any]:
    """start_nats_cluster's MQTT arguments: node i listens on TELEMETRY_MQTT_PORT + i; none when the port is 0.

    MQTT's own streams (sessions, QoS 1 state) get the ``replicas`` the service's streams get.
    """
    if not settings.mqtt_port:
        return {}
    last = settings.mqtt_port + size - 1
    if last > 65535:
        raise ConfigurationError(f"TELEMETRY_MQTT_PORT={settings.mqtt_port}: {size} nodes need ports up to {last}")
    credentials = (settings.mqtt_username, settings.mqtt_password) if settings.mqtt_password else None
    return {
        "mqtt_ports": [settings.mqtt_port + i for i in range(size)],
        "mqtt_host": settings.mqtt_host,
        "mqtt_credentials": credentials,
        "mqtt_replicas": replicas,
    }


def say_mqtt(settings: Settings, cluster: NatsCluster) -> None:
    """Where MQTT devices publish (every node), and how they sign in, as `telemetry run` says it."""
    if not cluster.mqtt_urls:
        return
    say(f"MQTT devices: publish to telemetry/points/<device_id> at any of {', '.join(cluster.mqtt_urls)}")
    say(f"  signing in as {settings.mqtt_username!r} with TELEMETRY_MQTT_PASSWORD" if settings.mqtt_password
        else "  no MQTT sign-in (loopback only): set TELEMETRY_MQTT_PASSWORD to require one")  # fmt: skip


def mqtt_line(cluster: NatsCluster) -> str:
    """The MQTT URLs for the final banner ("" without MQTT)."""
    return f"MQTT: {' '.join(cluster.mqtt_urls)}\n" if cluster.mqtt_urls else ""


def main(size: int) -> None:
    """Start the cluster and two copies of every process, print the URLs, supervise until Ctrl-C."""
    settings, data_dir, run_lock, stopping = prepare_run()
    nodes: list[EmbeddedServer] = []
    servers: list[EmbeddedServer] = []
    children: list[Child] = []
    try:
        cluster, replicas = start_cluster_servers(settings, data_dir, size)
        nodes = cluster.nodes
        say_mqtt(settings, cluster)
        database_url = settings.database_url
        if database_url is None:
            say(f"starting embedded PostgreSQL (data in {data_dir / 'postgres'})")
            servers.append(start_postgres(data_dir / "postgres"))
            database_url = servers[-1].url
        migrate(database_url)
        key = dev_api_key(data_dir)
        env = dict(os.environ)
        env.update(
            NATS_URL=cluster.url,
            DATABASE_URL=database_url,
            TELEMETRY_STREAM_REPLICAS=str(replicas),
            TELEMETRY_API_KEYS=",".join([*settings.api_keys, key]),
            TELEMETRY_SIGNING_KEY=settings.signing_key or dev_signing_key(data_dir),
            TELEMETRY_LOG_FORMAT=settings.log_format if settings.log_format != "auto" else "console",
        )
        for label, command, extra in process_plan(settings):
            child = Child(label, [sys.executable, "-m", "telemetry_core.cli", command], {**env, **extra})
            child.start()
            children.append(child)
        urls = [f"http://{settings.host}:{settings.port + copy}" for copy in range(COPIES)]
        for url in urls:
            _wait_healthy(url, children)
        print(f"\nTelemetry service (cluster of {size}, streams R{replicas}) is running at {' and '.join(urls)}\n"
              f"API key: {key}\nNATS_URL={cluster.url}\n{mqtt_line(cluster)}"
              "Press Ctrl-C to stop.\n", flush=True)  # fmt: skip
        units: list[Supervised] = [*(NodeUnit(node, i) for i, node in enumerate(nodes))]
        units += [*(ServerUnit(server) for server in servers), *children]
        Supervisor(units, say).run(stopping)
    except (RuntimeError, ConfigurationError) as exc:
        say(f"error: {exc}")
        raise SystemExit(1) from None
    finally:
        say("stopping")
        for child in reversed(children):
            child.stop()
        for server in [*reversed(servers), *reversed(nodes)]:
            server.stop()
        say("stopped; data kept in " + str(data_dir))
        run_lock.close()
