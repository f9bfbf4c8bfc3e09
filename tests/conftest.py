"""Session fixtures: a real NATS JetStream and PostgreSQL (free ports, temp dirs) and the process stack."""

from collections.abc import Iterator

import httpx
import pytest
import structlog

from telemetry_core.settings import Settings
from tests.support.servers import Servers, start_servers
from tests.support.stack import Stack

# In-process components under test log with structlog's defaults unless configured: those render every logged
# exception as a rich traceback with locals, hundreds of lines that took ~3 s each on a loaded 2-core machine and
# made retry loops miss their test deadlines. Plain tracebacks, as the processes themselves log them.
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
    ]
)


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
