from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology
from tests.support.own_database import own_database


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


@pytest.fixture(scope="module")
def own_database_url(settings: Settings) -> Iterator[str]:
    """A migrated database of the module's own: for tests of jobs that touch every row of a table.

    The suite's database is shared by every test and by the e2e stacks' ingest workers, which fold the hours'
    pending sketches every second: a test that counts pending rows, or that needs its own loop to be the one that
    folds, runs here (a failure seen in CI: another worker folded the hour before the test's loop could).
    """
    assert settings.database_url
    with own_database(settings.database_url, "own") as url:
        yield url


@pytest.fixture
async def own_pool(own_database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = make_pool(own_database_url, max_size=4)
    await p.open(wait=True)
    yield p
    await p.close()
