"""Latest value of one (device, metric), from the latest_values read model (through the gateway's cache, if on)."""

import time
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gateway.latest_cache import Key, LatestCache, Order
from gateway.latest_feed import LatestFeed
from gateway.metrics import LATEST_CACHE_ANSWERS
from gateway.views.series_batches import batch_statement, batches_of
from telemetry_core.value_columns import from_columns
from telemetry_schemas.api.queries import LatestValueResponse

_LATEST = """
SELECT time, value_type, value_num, value_text, value_bool, value_json, unit, tags, metadata
FROM telemetry.latest_values
WHERE device_id = %s AND metric_name = %s AND time >= %s
"""

# The row whatever its age (the cache keeps it for every look-back), and whether it is caught up with the raw
# points: no point of the series newer in (time, src_seq) order, i.e. no notice the projection has yet to apply
# (gateway/latest_cache.py, rule c). The PK (device_id, metric_name, time) of each partition from l.time on.
_FILL = """
SELECT l.time, l.value_type, l.value_num, l.value_text, l.value_bool, l.value_json, l.unit, l.tags, l.metadata,
       l.src_seq,
       NOT EXISTS (SELECT 1 FROM telemetry.points p
                   WHERE p.device_id = l.device_id AND p.metric_name = l.metric_name
                     AND p.time >= l.time AND (p.time > l.time OR p.src_seq > l.src_seq))
FROM telemetry.latest_values l
WHERE l.device_id = %(device)s AND l.metric_name = %(metric)s
"""
_FILL_BYTES = _FILL.encode()
_FILL_BATCH = batch_statement(_FILL_BYTES)  # several misses in one statement (gateway/views/series_batches.py)


def _response(device_id: str, metric_name: str, row: tuple[Any, ...]) -> LatestValueResponse:
    time_, kind, num, text, flag, obj, unit, tags, metadata = row[:9]
    return LatestValueResponse(
        device_id=device_id,
        metric_name=metric_name,
        value=from_columns(kind, num, text, flag, obj),
        unit=unit,
        timestamp=time_,
        tags=tags or {},
        metadata=metadata or {},
    )


async def latest_value(
    pool: AsyncConnectionPool, device_id: str, metric_name: str, since: datetime
) -> LatestValueResponse | None:
    """The newest point at or after ``since``, or None (from the database)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_LATEST, (device_id, metric_name, since), prepare=True)
        row = await cur.fetchone()
    return None if row is None else _response(device_id, metric_name, row)


class LatestReads:
    """/latest: through the cache when it is on (a hit needs no PostgreSQL round trip), else straight from the pool.

    The route's one dependency (pool included): Litestar resolves a handler's dependencies in a task group once
    there are two or more, which cost more than the cache saves (tests/bench/request_path.py showed ~0.8 ms of
    profiled time per request).
    """

    def __init__(
        self, pool: AsyncConnectionPool, cache: LatestCache | None = None, feed: LatestFeed | None = None
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.feed = feed
        self._hit = LATEST_CACHE_ANSWERS.labels("hit")
        self._miss = LATEST_CACHE_ANSWERS.labels("miss")

    async def latest(self, device_id: str, metric_name: str, since: datetime) -> LatestValueResponse | None:
        """The newest point at or after ``since``, or None: the same answer as ``latest_value`` at request time."""
        cache, feed = self.cache, self.feed
        if cache is None or feed is None:
            return await latest_value(self.pool, device_id, metric_name, since)
        key = (device_id, metric_name)
        # The barrier (one NATS PING) only for a series the cache may answer: a miss reads the database anyway,
        # and its fill is kept only if the raw points show nothing newer (_FILL), barrier or not. Dashboards
        # rotating over many series were paying the PING on every miss (make bench-peers' q1: ~0.9 ms more).
        if cache.get(key, time.monotonic()) is not None and await feed.synced():
            found = cache.get(key, time.monotonic())  # again: notices applied during the barrier may drop it
            if found is not None:
                self._hit.inc()
                return found if found.timestamp >= since else None
        self._miss.inc()
        fill = cache.begin_fill(key)
        params = {"device": device_id, "metric": metric_name}
        batches = batches_of(self.pool)
        if batches is not None:  # misses in flight together (a dashboard opening) share one statement
            rows = await batches.rows("latest fill", _FILL_BYTES, _FILL_BATCH, params)
            row = rows[0] if rows else None
        else:
            async with self.pool.connection() as conn:
                cur = await conn.execute(_FILL_BYTES, params, prepare=True)
                row = await cur.fetchone()
        if row is None:
            return None
        found = _response(device_id, metric_name, row)
        if fill is not None:
            order: Order = (row[0], row[9])
            cache.finish_fill(fill, found, order, bool(row[10]), time.monotonic())
        return found if found.timestamp >= since else None


async def fill_series(pool: AsyncConnectionPool, cache: LatestCache, keys: list[Key]) -> list[Key]:
    """Fill ``keys`` into ``cache`` with one statement (the prefill, gateway/latest_prefill.py); the keys not kept.

    The same statement and the same ``finish_fill`` rules as a miss of ``LatestReads.latest``: a row is kept only if
    it is caught up with the raw points and as new as every notice that came in while it was read.
    """
    fills = {key: fill for key in keys if (fill := cache.begin_fill(key, evict=False)) is not None}
    if not fills:
        return list(keys)
    series = list(fills)
    params = {"i": list(range(len(series))), "devices": [d for d, _ in series], "metrics": [m for _, m in series]}
    async with pool.connection() as conn:
        cur = await conn.execute(_FILL_BATCH, params, prepare=True)
        rows = await cur.fetchall()
    kept: set[Key] = set()
    now = time.monotonic()
    for batch_row in rows:
        key, row = series[batch_row[0]], tuple(batch_row[1:])
        if cache.finish_fill(fills[key], _response(key[0], key[1], row), (row[0], row[9]), bool(row[10]), now):
            kept.add(key)
    return [key for key in keys if key not in kept]
