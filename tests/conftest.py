"""Session fixtures: a real NATS JetStream and PostgreSQL (free ports, temp dirs) and the process stack."""

from collections.abc import Iterator

import httpx
import pytest

from telemetry_core.settings import Settings
from tests.support.servers import Servers, start_servers
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    started = start_servers(tmp_path_factory.mktemp("servers"))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def settings(servers: Servers) -> Settings:
    return Settings.from_env({"NATS_URL": servers.nats_url, "DATABASE_URL": servers.database_url})


@pytest.fixture(scope="session")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Percentiles from sketches only above this many points: 0 makes the small test data use them.
    running = Stack(
        servers, tmp_path_factory.mktemp("stack-logs"), extra_env={"TELEMETRY_EXACT_PERCENTILE_POINTS": "0"}
    )
    running.start_all()
    yield running
    running.stop_all()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=15) as c:
        yield c
