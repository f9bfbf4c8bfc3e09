"""Async PostgreSQL pool with fail-fast start and bounded waits."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from psycopg import AsyncConnection, sql
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from telemetry_core.gated_pool import GatedPool, LeanPool

DEFAULT_STATEMENT_TIMEOUT_S = 30.0
# psycopg_pool retries a failed connect with a doubling delay (1 s, 2 s, ...) for ``reconnect_timeout`` seconds,
# then gives up on that connection: the pool shrinks and a caller already waiting for a connection waits out its
# whole timeout (30 s in the workers) with nobody connecting. So each give-up is followed, this long after, by a
# new attempt (``_reconnect_later``): while PostgreSQL is down the pool tries about every 1-3 s, forever, and a
# waiting caller gets a connection within seconds of PostgreSQL answering again.
RECONNECT_TRY_S = 2.0
RECONNECT_PAUSE_S = 1.0


def json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode json / jsonb columns with msgspec, about 5x faster than ``json.loads`` on bytes (2 per latest value).

    The standard library for what msgspec refuses and PostgreSQL stores (numbers beyond a float, e.g. 1e400).
    """
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def json_dumps(value: Any) -> bytes:
    """Encode json / jsonb parameters with msgspec, several times faster than ``json.dumps``.

    The standard library's encoder was a fifth of the ingest worker's CPU (the tags and metadata of every row it
    COPYs; py-spy during make bench-peers' load). It still encodes what msgspec refuses.
    """
    try:
        return msgspec.json.encode(value)
    except (TypeError, OverflowError):
        return json.dumps(value).encode()


def _configure_with(statement_timeout_s: float) -> Callable[[AsyncConnection], Awaitable[None]]:
    ms = max(1, int(statement_timeout_s * 1000))

    async def configure(conn: AsyncConnection) -> None:
        set_json_loads(json_loads, conn)
        set_json_dumps(json_dumps, conn)
        # Every statement of ours names schema telemetry explicitly; the timeout bounds a stuck query, so one
        # slow statement cannot hold a pooled connection for longer than this.
        await conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(ms)))
        await conn.commit()

    return configure


_retrying: set["asyncio.Task[None]"] = set()  # strong references: a pending task must not be collected


async def _check_later(pool: AsyncConnectionPool) -> None:
    await asyncio.sleep(RECONNECT_PAUSE_S)
    if not pool.closed:
        await pool.check()  # grows the pool by one connection when it has room: a new attempt with back-off


def _reconnect_later(pool: AsyncConnectionPool) -> None:
    """psycopg_pool's ``reconnect_failed`` callback: start a new connection attempt after a short pause."""
    if pool.closed:
        return
    task = asyncio.get_running_loop().create_task(_check_later(pool))
    _retrying.add(task)
    task.add_done_callback(_retrying.discard)


def make_pool(
    database_url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 2.0,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    autocommit: bool = False,
) -> AsyncConnectionPool:
    """Build (but do not open) a pool; ``timeout_s`` bounds how long a caller waits for a connection.

    ``autocommit`` suits a pool that only reads (the gateway): without it every checkout costs a BEGIN and a
    COMMIT round trip around the one SELECT. Code that needs a transaction opens one (``conn.transaction()``).
    Callers beyond ``max_size`` queue on a semaphore (telemetry_core/gated_pool.py), not in the pool; an autocommit
    pool also keeps its connections between blocks (LeanPool) instead of handing each back to psycopg_pool.
    """
    cls = LeanPool if autocommit else GatedPool
    return cls(
        database_url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        open=False,
        configure=_configure_with(statement_timeout_s),
        kwargs={"autocommit": autocommit, "connect_timeout": max(1, int(timeout_s))},
        reconnect_timeout=RECONNECT_TRY_S,  # then _reconnect_later starts again: retried forever, never > ~3 s apart
        reconnect_failed=_reconnect_later,
    )


def pool_exhausted(pool: AsyncConnectionPool) -> bool:
    """Every connection the pool may open is open and checked out: a wait that timed out was for a busy pool.

    Otherwise (connections missing) the pool could not connect: PostgreSQL is down or unreachable.
    """
    stats = pool.get_stats()
    return stats.get("pool_size", 0) >= pool.max_size and stats.get("pool_available", 0) == 0


async def close_pool(pool: AsyncConnectionPool, timeout_s: float = 1.0) -> None:
    """Close the pool, waiting at most ``timeout_s`` for its background workers (they may be reconnecting)."""
    await pool.close(timeout=timeout_s)
