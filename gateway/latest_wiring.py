"""Whether this gateway runs the latest-value cache, and starting / stopping it with the lifespan."""

import structlog
from psycopg_pool import AsyncConnectionPool

from gateway.latest_cache import LatestCache
from gateway.latest_feed import LatestFeed
from gateway.views.latest import LatestReads
from telemetry_core.nats_conn import server_urls
from telemetry_core.settings import Settings


def cache_off_reason(settings: Settings, nats_url: str) -> str | None:
    """Why the cache must stay off here, or None.

    Its ordering argument (gateway/latest_feed.py) needs the notice and the projection's fetch to pass through one
    nats-server, and the rows it keeps to come from the database every view reads: with a replica, a fill from the
    primary could be ahead of another process's replica read.
    """
    if settings.latest_cache_size == 0:
        return "TELEMETRY_LATEST_CACHE_SIZE=0"
    if len(server_urls(nats_url)) > 1:
        return "NATS_URL names a cluster (several servers)"
    if settings.database_read_url is not None:
        return "DATABASE_READ_URL is set (reads from a replica)"
    return None


async def start_latest_reads(
    settings: Settings, nats_url: str, pool: AsyncConnectionPool, log: structlog.stdlib.BoundLogger
) -> LatestReads:
    """/latest's reader over ``pool``: with the cache and its notice subscription started, unless it is off."""
    reason = cache_off_reason(settings, nats_url)
    if reason is not None:
        log.info("latest_cache_off", reason=reason)
        return LatestReads(pool)
    cache = LatestCache(settings.latest_cache_size, settings.latest_cache_ttl_s)
    feed = LatestFeed(cache, server_urls(nats_url), log)
    await feed.start()
    return LatestReads(pool, cache, feed)


async def stop_latest_reads(reads: LatestReads | None) -> None:
    """Close the cache's subscription (if it runs)."""
    if reads is not None and reads.feed is not None:
        await reads.feed.stop()
