"""The containers test backend: the NATS and PostgreSQL images deploy/compose.yaml runs, via testcontainers.

Chosen with TELEMETRY_TEST_BACKEND=containers on a machine with a reachable Docker engine. Host ports are
fixed per container (not Docker's ephemeral ones) so a killed container restarts on the same address, as
the crash tests expect of any server.
"""

import re
import time
from pathlib import Path

import psycopg
from testcontainers.core.container import DockerContainer

from telemetry_core.embedded import free_port, port_open

COMPOSE = Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"
_USER = _PASSWORD = _DB = "telemetry"


def compose_image(service: str, compose: Path = COMPOSE) -> str:
    """The ``image:`` of one service in compose.yaml (the file is simple; no YAML library needed)."""
    match = re.search(rf"^  {re.escape(service)}:\n(?:    .*\n)*?    image: *(\S+)", compose.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{compose} names no image for service {service!r}")
    return match.group(1)


def _wait_port(port: int, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"container port {port} did not open within {deadline_s}s")


class ContainerServer:
    """A running container with the ``Server`` interface the tests use."""

    def __init__(self, container: DockerContainer, url: str, port: int, ready: "Ready") -> None:
        self.container, self.url, self.port, self._ready = container, url, port, ready
        # The host port of nats' MQTT listener (deploy/nats/single.conf); 0 for other servers.
        self.mqtt_port = 0

    def kill(self) -> None:
        """SIGKILL the server process (the container stops, its volume stays)."""
        self.container.get_wrapped_container().kill()

    def start_again(self) -> None:
        """Start the killed container again: same host port, same data."""
        self.container.get_wrapped_container().start()
        self._ready(self)

    def stop(self) -> None:
        """Remove the container."""
        self.container.stop()


class Ready:
    """Waits until a container's server answers."""

    def __call__(self, server: ContainerServer) -> None:
        _wait_port(server.port)


class PostgresReady(Ready):
    """PostgreSQL opens its port before it accepts queries; wait for a real connection."""

    def __call__(self, server: ContainerServer) -> None:
        _wait_port(server.port)
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(server.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def start_nats_container() -> ContainerServer:
    """nats (image from compose.yaml) with JetStream on a free host port, configured as compose does (fsync always)."""
    port, mqtt_port = free_port(), free_port()
    config = COMPOSE.parent / "nats" / "single.conf"
    container = (
        DockerContainer(compose_image("nats"))
        .with_volume_mapping(str(config), "/etc/nats/single.conf")
        .with_command("--config /etc/nats/single.conf")
        .with_bind_ports(4222, port)
        .with_bind_ports(1883, mqtt_port)
    )
    container.start()
    server = ContainerServer(container, f"nats://127.0.0.1:{port}", port, Ready())
    server.mqtt_port = mqtt_port
    server._ready(server)
    return server


def start_postgres_container(*, durable: bool = False) -> ContainerServer:
    """postgres (image from compose.yaml) on a free host port; fsync off unless ``durable``."""
    port = free_port()
    command = "postgres -c max_connections=200"
    if not durable:
        command += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    container = (
        DockerContainer(compose_image("postgres"))
        .with_env("POSTGRES_USER", _USER)
        .with_env("POSTGRES_PASSWORD", _PASSWORD)
        .with_env("POSTGRES_DB", _DB)
        .with_command(command)
        .with_bind_ports(5432, port)
    )
    container.start()
    url = f"postgresql://{_USER}:{_PASSWORD}@127.0.0.1:{port}/{_DB}"
    server = ContainerServer(container, url, port, PostgresReady())
    server._ready(server)
    return server
