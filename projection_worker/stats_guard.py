"""The statistics count each POINTS message's notice once, however often it is published (migration 0020).

An ingest worker that crashed after publishing a transaction's notices but before acknowledging its POINTS
messages stores them again when they are redelivered (one at a time) and publishes their notices again, grouped
differently, so under other message ids: JetStream does not de-duplicate them. The device_stats projection
counts a notice only when its POINTS sequence enters ``telemetry.stats_counted_points`` in the transaction
that adds the counts (:func:`first_counted`). A sequence the ingest consumer has acknowledged is never stored
again, so :func:`prune` forgets it; the table holds only the messages in flight.
"""

import asyncio
from typing import Any

import structlog
from nats.js import JetStreamContext
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool

from telemetry_core.stopping import sleep_or_stop
from telemetry_core.topology import INGEST_CONSUMER, POINTS_STREAM
from telemetry_schemas.notices import PointsStored

TABLE = "telemetry.stats_counted_points"
# How often the guard forgets acknowledged messages: it then holds about this long's worth of messages at most
# (the ingest consumer acknowledges within milliseconds of storing).
PRUNE_EVERY_S = 30.0

_COUNT = (
    "INSERT INTO telemetry.stats_counted_points (points_seq) SELECT unnest(%s::bigint[]) "
    "ON CONFLICT DO NOTHING RETURNING points_seq"
)
# SHARE ROW EXCLUSIVE conflicts with the projection's inserts: every sequence committed before the lock was
# granted was stored in POINTS before the stream's last sequence is read under it, so a row above that last
# sequence is from a stream that was deleted and created again (its sequences restarted), not a new message.
_LOCK = "LOCK TABLE telemetry.stats_counted_points IN SHARE ROW EXCLUSIVE MODE"
_PRUNE = "DELETE FROM telemetry.stats_counted_points WHERE points_seq <= %s OR points_seq > %s"


async def first_counted(cur: AsyncCursor[Any], notices: list[PointsStored]) -> list[PointsStored]:
    """The notices whose POINTS message no earlier transaction (nor an earlier notice here) has counted."""
    if not notices:
        return []
    await cur.execute(_COUNT, (sorted({n.points_seq for n in notices}),))  # key order: no deadlock between copies
    fresh = {seq for (seq,) in await cur.fetchall()}
    first: list[PointsStored] = []
    for notice in notices:
        if notice.points_seq in fresh:
            fresh.discard(notice.points_seq)  # the same message twice in one batch counts once too
            first.append(notice)
    return first


async def prune(pool: AsyncConnectionPool, js: JetStreamContext) -> int:
    """Forget the sequences the ingest consumer has acknowledged (and any above the stream's last); how many."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_LOCK)
        floor = (await js.consumer_info(POINTS_STREAM, INGEST_CONSUMER)).ack_floor
        last = (await js.stream_info(POINTS_STREAM)).state.last_seq
        cur = await conn.execute(_PRUNE, (floor.stream_seq if floor else 0, last))
        return cur.rowcount


async def prune_until_stopped(
    pool: AsyncConnectionPool, js: JetStreamContext, stop: asyncio.Event, log: structlog.stdlib.BoundLogger
) -> None:
    """Prune every PRUNE_EVERY_S until ``stop``; a failure is logged and tried again next time (nothing is lost)."""
    while not await sleep_or_stop(stop, PRUNE_EVERY_S):
        try:
            pruned = await prune(pool, js)
        except Exception as exc:  # NATS or PostgreSQL away for a moment: the table only grows until next time
            log.warning("stats_guard_prune_failed", error=repr(exc), retry_in_s=PRUNE_EVERY_S)
        else:
            log.debug("stats_guard_pruned", rows=pruned)
