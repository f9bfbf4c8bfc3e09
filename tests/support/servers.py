"""Real NATS JetStream and PostgreSQL for tests, started the same way `telemetry run` starts them."""

from dataclasses import dataclass
from pathlib import Path

from telemetry_core.embedded import EmbeddedServer, start_nats, start_postgres
from telemetry_core.migrate import migrate


@dataclass
class Servers:
    """A private NATS and PostgreSQL pair."""

    nats: EmbeddedServer
    postgres: EmbeddedServer

    @property
    def nats_url(self) -> str:
        return self.nats.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def stop(self) -> None:
        self.nats.stop()
        self.postgres.stop()


def start_servers(root: Path, *, durable: bool = False) -> Servers:
    """Start both servers under ``root`` (free ports) and migrate the database.

    Test clusters run without fsync unless ``durable``: tests that crash PostgreSQL itself need it.
    """
    nats = start_nats(root / "nats")
    try:
        postgres = start_postgres(root / "postgres", durable=durable)
    except BaseException:
        nats.stop()
        raise
    migrate(postgres.url)
    return Servers(nats, postgres)
