from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    assert settings.database_url
    p = make_pool(settings.database_url, max_size=4)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[Client]:
    client = await nats.connect(settings.nats_url)
    await ensure_topology(client.jetstream(), settings)
    yield client
    await client.drain()
