"""Whether this gateway runs its read caches (latest values, one-series queries), and starting / stopping them."""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from psycopg_pool import AsyncConnectionPool

from gateway.latest_cache import LatestCache
from gateway.latest_feed import LatestFeed
from gateway.latest_prefill import LatestPrefill
from gateway.query_cache import QueryCache
from gateway.views.cached_queries import QueryReads
from gateway.views.latest import LatestReads
from telemetry_core.nats_conn import server_urls
from telemetry_core.settings import Settings


@dataclass(frozen=True)
class CachedReads:
    """/latest's reader (through the latest-value cache, if on) and the query cache's reader (None when off)."""

    latest: LatestReads
    queries: QueryReads | None
    prefill: "asyncio.Task[None] | None" = None  # the latest-value prefill's rounds (None: off)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def cache_off_reason(settings: Settings, nats_url: str) -> str | None:
    """Why the caches must stay off here, or None.

    Their ordering argument (gateway/latest_feed.py) needs the notice and the projection's fetch to pass through one
    nats-server, and the rows they keep to come from the database every view reads: with a replica, a fill from the
    primary could be ahead of another process's replica read (and a replica read behind a notice).
    """
    if len(server_urls(nats_url)) > 1:
        return "NATS_URL names a cluster (several servers)"
    if settings.database_read_url is not None:
        return "DATABASE_READ_URL is set (reads from a replica)"
    return None


async def start_cached_reads(
    settings: Settings,
    nats_url: str,
    pool: AsyncConnectionPool,
    log: structlog.stdlib.BoundLogger,
    busy: Callable[[], bool] = lambda: False,
) -> CachedReads:
    """The readers over ``pool``: with the caches and their notice subscription started, unless they are off.

    ``busy``: the latest-value prefill waits while it says so (gateway/latest_prefill.py).
    """
    reason = cache_off_reason(settings, nats_url)
    if reason is None and settings.latest_cache_size == 0 and settings.query_cache_size == 0:
        reason = "TELEMETRY_LATEST_CACHE_SIZE=0 and TELEMETRY_QUERY_CACHE_SIZE=0"
    if reason is not None:
        log.info("read_caches_off", reason=reason)
        return CachedReads(LatestReads(pool), None)
    latest = LatestCache(settings.latest_cache_size, settings.latest_cache_ttl_s)
    queries = QueryCache(settings.query_cache_size, settings.query_cache_ttl_s) if settings.query_cache_size else None
    feed = LatestFeed(latest, server_urls(nats_url), log, queries=queries)
    await feed.start()
    stop, task = asyncio.Event(), None
    prefill = settings.latest_prefill_interval_s if settings.latest_cache_size else 0.0
    if prefill > 0:
        rounds = LatestPrefill(latest, pool, log, prefill, busy).run(stop)
        task = asyncio.get_running_loop().create_task(rounds, name="latest-prefill")
    log.info("read_caches_on", latest=settings.latest_cache_size, queries=settings.query_cache_size, prefill_s=prefill)
    return CachedReads(
        LatestReads(pool, latest, feed) if settings.latest_cache_size else LatestReads(pool, None, feed),
        QueryReads(queries, feed) if queries is not None else None,
        task,
        stop,
    )


async def stop_cached_reads(reads: CachedReads | None) -> None:
    """Stop the prefill's rounds and close the caches' subscription (if they run)."""
    if reads is None:
        return
    reads.stop.set()
    if reads.prefill is not None:
        with contextlib.suppress(Exception):  # it logs its own failures; a stopped round raises nothing new
            await asyncio.wait_for(reads.prefill, 5.0)
    if reads.latest.feed is not None:
        await reads.latest.feed.stop()
