"""Device and service statistics (E6-US1/US2) from the stats read model; never a scan of the points table.

Each figure is computed exactly as telemetry_schemas.api.stats defines it. One statement per answer, so
every figure sees the same now() and the same snapshot (the points table's size aside: cached up to 5 s).
"""

import asyncio
import time
import weakref
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from telemetry_schemas.api.stats import DeviceStatsResponse, HourPoints, MetricPoints, ServiceStatsResponse
from telemetry_schemas.enums import MetricType

TOP_METRICS = 5
UNDEFINED = "undefined"

# One statement per answer: one round trip, and every figure from the same snapshot and the same now().
# The device's series rows, each carrying the device-wide figures; an unknown device gives one row of NULL
# series with the figures. Hour buckets: the current UTC hour and the 23 before it.
_DEVICE = """
SELECT s.metric_name, s.points, s.last_time, s.active, s.metric_type, f.last_24h, f.alerts, f.all_points
FROM (SELECT
    (SELECT coalesce(sum(points), 0) FROM telemetry.stats_hour
     WHERE device_id = %(d)s AND hour BETWEEN date_trunc('hour', now(), 'UTC') - interval '23 hours'
                                          AND date_trunc('hour', now(), 'UTC')) AS last_24h,
    (SELECT count(*) FROM telemetry.alerts
     WHERE device_id = %(d)s AND triggered_at >= now() - interval '24 hours') AS alerts,
    (SELECT coalesce(sum(points), 0) FROM telemetry.stats_service_hour) AS all_points
) f
LEFT JOIN LATERAL (
    SELECT s.metric_name, s.points, s.last_time, s.last_stored_at >= now() - interval '1 hour' AS active,
           d.metric_type
    FROM telemetry.stats_series s LEFT JOIN telemetry.metric_definitions d ON d.name = s.metric_name
    WHERE s.device_id = %(d)s
) s ON true
"""
_SERVICE = """
WITH series AS (
    SELECT s.device_id, s.metric_name, s.last_stored_at, coalesce(d.metric_type, 'undefined') AS metric_type
    FROM telemetry.stats_series s LEFT JOIN telemetry.metric_definitions d ON d.name = s.metric_name
), by_type AS (
    SELECT metric_type, count(DISTINCT device_id) AS devices, count(DISTINCT metric_name) AS metrics
    FROM series GROUP BY metric_type
), win AS (
    SELECT date_trunc('minute', now(), 'UTC') - interval '4 minutes' AS since,
           date_trunc('hour', now(), 'UTC') AS hour
)
SELECT
    (SELECT count(DISTINCT device_id) FROM series),
    (SELECT count(DISTINCT device_id) FROM series WHERE last_stored_at >= now() - interval '1 hour'),
    (SELECT count(DISTINCT device_id) FROM series WHERE last_stored_at >= now() - interval '24 hours'),
    (SELECT count(DISTINCT metric_name) FROM series),
    (SELECT coalesce(sum(points), 0) FROM telemetry.stats_service_hour),
    (SELECT count(*) FROM telemetry.alerts WHERE triggered_at >= now() - interval '24 hours'),
    extract(epoch FROM now() - win.since)::float8,
    m.messages, m.written, m.latency_messages, m.latency_ms_sum,
    (SELECT coalesce(sum(letters), 0) FROM telemetry.stats_dead_letter_minute
     WHERE worker = 'ingest' AND minute >= win.since),
    (SELECT coalesce(json_object_agg(metric_type, devices), '{}') FROM by_type),
    (SELECT coalesce(json_object_agg(metric_type, metrics), '{}') FROM by_type),
    win.hour,
    (SELECT array_agg(coalesce(sh.points, 0) ORDER BY h.hour)
     FROM generate_series(win.hour - interval '23 hours', win.hour, interval '1 hour') AS h(hour)
     LEFT JOIN telemetry.stats_service_hour sh ON sh.hour = h.hour)
FROM win
CROSS JOIN LATERAL (
    SELECT coalesce(sum(messages), 0) AS messages, coalesce(sum(points), 0) AS written,
           coalesce(sum(latency_messages), 0) AS latency_messages,
           coalesce(sum(latency_ms_sum), 0)::float8 AS latency_ms_sum
    FROM telemetry.stats_ingest_minute WHERE minute >= win.since
) m
"""
_TABLE_BYTES = (
    "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('telemetry.points'::regclass)"
)
# pg_total_relation_size stats every file of every partition: read at most this often, shared by all requests.
TABLE_BYTES_TTL_S = 5.0


class TableBytes:
    """The points table's size in PostgreSQL, read at most every TABLE_BYTES_TTL_S (a gateway-wide cache)."""

    def __init__(self) -> None:
        self._value = 0
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, pool: AsyncConnectionPool) -> int:
        """The cached size, refreshed when older than the TTL (one reader refreshes; the others wait for it)."""
        if time.monotonic() - self._read_at < TABLE_BYTES_TTL_S:
            return self._value
        async with self._lock:
            if time.monotonic() - self._read_at >= TABLE_BYTES_TTL_S:
                async with pool.connection() as conn:
                    row = await (await conn.execute(_TABLE_BYTES, prepare=True)).fetchone()
                self._value, self._read_at = int(row[0]) if row else 0, time.monotonic()
        return self._value


_sizes: "weakref.WeakKeyDictionary[AsyncConnectionPool, TableBytes]" = weakref.WeakKeyDictionary()


async def points_table_bytes(pool: AsyncConnectionPool) -> int:
    """The points table's size in the database of ``pool`` (cached per pool)."""
    cache = _sizes.get(pool)
    if cache is None:
        cache = _sizes[pool] = TableBytes()
    return await cache.get(pool)


def _empty_by_type() -> dict[str, int]:
    return {**{t.value: 0 for t in MetricType}, UNDEFINED: 0}


async def device_stats(pool: AsyncConnectionPool, device_id: str) -> DeviceStatsResponse:
    """The device's statistics; zeros for a device with no data."""
    size = await points_table_bytes(pool)
    async with pool.connection() as conn:
        rows = await (await conn.execute(_DEVICE, {"d": device_id}, prepare=True)).fetchall()
    last_24h, alerts, all_points = (int(v) for v in rows[0][5:8])
    series = [row[:5] for row in rows if row[0] is not None]
    by_type = _empty_by_type()
    for _name, _points, _last, _active, metric_type in series:
        by_type[metric_type or UNDEFINED] = by_type.get(metric_type or UNDEFINED, 0) + 1
    points = sum(int(row[1]) for row in series)
    top = sorted(series, key=lambda row: (-row[1], row[0]))[:TOP_METRICS]
    return DeviceStatsResponse(
        device_id=device_id,
        total_metrics=len(series),
        active_metrics=sum(1 for row in series if row[3]),
        data_points_count=points,
        last_update=max((row[2] for row in series), default=None),
        storage_size=size * points // all_points if all_points else 0,
        avg_frequency=last_24h / 1440,
        last_24h_points=last_24h,
        last_24h_alerts=alerts,
        metrics_by_type=by_type,
        top_metrics=[MetricPoints(name=row[0], points=int(row[1])) for row in top],
    )


async def service_stats(pool: AsyncConnectionPool) -> ServiceStatsResponse:
    """The whole service's statistics; zeros when nothing is stored."""
    size = await points_table_bytes(pool)
    async with pool.connection() as conn:
        row: Any = await (await conn.execute(_SERVICE, prepare=True)).fetchone()
    (devices, active, last_24h_devices, metrics, points, alerts, window_s, messages, written, latency_n, latency_sum,
     letters, devices_types, metrics_types, hour, by_hour) = row  # fmt: skip
    devices_by_type = {**_empty_by_type(), **{k: int(v) for k, v in devices_types.items()}}
    metrics_by_type = {**_empty_by_type(), **{k: int(v) for k, v in metrics_types.items()}}
    hours = [HourPoints(hour=hour - timedelta(hours=23 - i), points=int(n)) for i, n in enumerate(by_hour)]
    offered = int(messages) + int(letters)
    return ServiceStatsResponse(
        total_devices=int(devices),
        active_devices=int(active),
        total_metrics=int(metrics),
        total_data_points=int(points),
        storage_size=size,
        points_per_second=int(written) / window_s if window_s > 0 else 0.0,
        avg_latency=float(latency_sum) / int(latency_n) if latency_n else 0.0,
        error_rate=int(letters) / offered if offered else 0.0,
        last_24h_points=sum(h.points for h in hours),
        last_24h_devices=int(last_24h_devices),
        last_24h_alerts=int(alerts),
        devices_by_type=devices_by_type,
        metrics_by_type=metrics_by_type,
        data_by_hour=hours,
    )
