"""The gateway's deleted-users feed: user.deleted from the PLATFORM stream, and the table for older deletions."""

import asyncio
from collections.abc import AsyncIterator

import msgspec
import psycopg
import pytest
import structlog
from nats.aio.client import Client
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from gateway.auth.deleted_users import DeletedUsers
from telemetry_core.erased_principals import principal_sha256
from telemetry_core.migrate import migrate
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from tests.support.ids import unique


async def _deleted(nc: Client, settings: Settings, user_id: str) -> None:
    await nc.jetstream().publish(settings.user_deleted_subject, msgspec.json.encode({"user_id": user_id}))


async def _until(condition: object, within_s: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_deletions_before_and_after_start_are_known_and_no_one_else(
    nc: Client, settings: Settings, pool: AsyncConnectionPool
) -> None:
    before, after, kept = unique("gone-before"), unique("gone-after"), unique("kept")
    await _deleted(nc, settings, before)
    users = DeletedUsers(nc.jetstream(), settings.user_deleted_subject, pool, structlog.get_logger())
    await users.start()
    try:
        assert users.deleted(before)  # replayed from the stream before start() returned
        await _deleted(nc, settings, after)
        assert await _until(lambda: users.deleted(after)), "a deletion published after start was never applied"
        assert not users.deleted(kept)
        await nc.jetstream().publish(settings.user_deleted_subject, b"not json")  # another service's junk
        await _deleted(nc, settings, "x" + after)
        assert await _until(lambda: users.deleted("x" + after)), "junk on the subject stopped the feed"
        assert users.follower.healthy
    finally:
        await users.stop()


async def test_the_hash_is_the_one_the_database_keeps(settings: Settings) -> None:
    user = unique("hash")
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO telemetry.erased_principals (principal_sha256) VALUES (%s)", (principal_sha256(user),)
        )
        row = conn.execute("SELECT telemetry.is_erased(%s), telemetry.is_erased(%s)", (user, user + "x")).fetchone()
    assert row == (True, False)


@pytest.fixture
async def empty_database(settings: Settings) -> AsyncIterator[str]:
    """A database without the service's tables (yet)."""
    assert settings.database_url
    name = unique("deleted_users").replace("-", "_")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield settings.database_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_the_table_is_read_again_until_it_answers(nc: Client, settings: Settings, empty_database: str) -> None:
    old = unique("gone-long-ago")  # deleted longer ago than the stream keeps: only in the table
    pool = make_pool(empty_database, max_size=2)
    await pool.open(wait=True)
    users = DeletedUsers(nc.jetstream(), settings.user_deleted_subject, pool, structlog.get_logger())
    try:
        with capture_logs() as logs:
            await users.start()  # the table does not exist: start() returns all the same
            assert await _until(lambda: any(e["event"] == "deleted_users_unreadable_retrying" for e in logs))
        assert not users.loaded.is_set() and not users.deleted(old)
        migrate(empty_database)
        with psycopg.connect(empty_database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO telemetry.erased_principals (principal_sha256) VALUES (%s)", (principal_sha256(old),)
            )
        assert await _until(users.loaded.is_set, within_s=15), "the table was not read again once it existed"
        assert users.deleted(old)
    finally:
        await users.stop()
        await pool.close()
