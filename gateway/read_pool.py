"""Reads from a streaming replica (DATABASE_READ_URL): the views' pool, and the replica's health.

With DATABASE_READ_URL set the gateway holds two pools: the primary's (DATABASE_URL: health, the alert
engines' heartbeats) and the replica's, which every view reads and every read-your-writes wait of a
command polls (gateway/commands/wiring.py). A projection commits its checkpoint in the same transaction
as its read model's rows, so once the replica shows the checkpoint it shows the rows: a write answers
when a read on the replica would see it. Unset, the read pool IS the primary's pool: nothing changes.
"""

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_schemas.api.health import ComponentHealth

CHECK_TIMEOUT_S = 1.0
# Replay further behind than this (while WAL is waiting to be replayed): writes wait out their whole
# read-your-writes deadline (gateway/commands/wiring.py VISIBLE_WITHIN_S) for it, so say so.
LAGGING_AFTER_S = 5.0


async def open_read_pool(settings: Settings, primary: AsyncConnectionPool) -> AsyncConnectionPool:
    """A second pool against DATABASE_READ_URL, opened like the primary's (fail fast); ``primary`` when unset."""
    if settings.database_read_url is None:
        return primary
    pool = make_pool(settings.database_read_url, min_size=2, max_size=settings.db_pool_max,
                     timeout_s=settings.db_timeout_s, statement_timeout_s=settings.statement_timeout_s,
                     autocommit=True)  # fmt: skip
    await pool.open(wait=True, timeout=30.0)
    return pool


async def close_read_pool(read_pool: AsyncConnectionPool, primary: AsyncConnectionPool) -> None:
    """Close the replica's pool (the primary's is closed by its owner)."""
    if read_pool is not primary:
        await read_pool.close()


_PRIMARY_LSN = "SELECT pg_current_wal_lsn()::text"
# Bytes behind: the primary's WAL position (or, if the primary did not answer, what the replica has received)
# minus what it has replayed. NULL on a server that is not in recovery.
_REPLICA = """
SELECT pg_is_in_recovery(),
       pg_wal_lsn_diff(coalesce(%s::pg_lsn, pg_last_wal_receive_lsn()), pg_last_wal_replay_lsn()),
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,
       (SELECT status FROM pg_stat_wal_receiver)
"""


async def _primary_lsn(primary: AsyncConnectionPool) -> str | None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), primary.connection(timeout=CHECK_TIMEOUT_S) as conn:
            row = await (await conn.execute(_PRIMARY_LSN)).fetchone()
    except Exception:
        return None  # the primary's own component (time_series_db) says why
    return str(row[0]) if row else None


async def check_read_replica(primary: AsyncConnectionPool, read_pool: AsyncConnectionPool) -> ComponentHealth:
    """Reachable, and how far replay is behind (bytes of WAL, seconds since the last replayed commit)."""
    if read_pool is primary:
        return ComponentHealth(status="not_configured", detail="DATABASE_READ_URL is not set: reads use the primary")
    primary_lsn = await _primary_lsn(primary)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), read_pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            row = await (await conn.execute(_REPLICA, (primary_lsn,))).fetchone()
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ComponentHealth(status="unhealthy", detail=f"the read replica is unavailable: {first}")
    assert row is not None
    standby, behind, since_replay_s, pause_state, receiver = row
    if not standby:
        return ComponentHealth(status="healthy", detail="DATABASE_READ_URL is not in recovery (not a standby)",
                               metrics={"standby": False})  # fmt: skip
    behind_bytes = None if behind is None else max(0, int(behind))
    # Caught up means nothing to replay: then the time since the last replayed commit is no lag (an idle primary).
    lag_s = 0.0 if behind_bytes == 0 or since_replay_s is None else round(max(0.0, since_replay_s), 3)
    stats = read_pool.get_stats()
    metrics: dict[str, Any] = {
        "standby": True,
        "pool_size": stats.get("pool_size", 0),
        "pool_available": stats.get("pool_available", 0),
        "replay_lag_bytes": behind_bytes,
        "replay_lag_s": lag_s,
        "replay": pause_state,
        "wal_receiver": receiver,
        "primary_lsn": primary_lsn,
    }
    if pause_state != "not paused":
        detail = f"WAL replay is {pause_state}: writes wait for it (up to their deadline), reads are stale"
        return ComponentHealth(status="lagging", detail=detail, metrics=metrics)
    if lag_s > LAGGING_AFTER_S:
        detail = f"replay is {lag_s:g}s behind: writes wait up to their deadline for it, reads are that stale"
        return ComponentHealth(status="lagging", detail=detail, metrics=metrics)
    return ComponentHealth(status="healthy", metrics=metrics)
