"""Device and service statistics (E6-US1/US2) from the stats read model; never a scan of the points table.

Each figure is computed exactly as telemetry_schemas.api.stats defines it. One transaction per answer, so
every figure sees the same now() and the same snapshot.
"""

from typing import Any

from psycopg_pool import AsyncConnectionPool

from telemetry_schemas.api.stats import DeviceStatsResponse, HourPoints, MetricPoints, ServiceStatsResponse
from telemetry_schemas.enums import MetricType

TOP_METRICS = 5
UNDEFINED = "undefined"

_DEVICE_SERIES = """
SELECT s.metric_name, s.points, s.last_time, s.last_stored_at >= now() - interval '1 hour', d.metric_type
FROM telemetry.stats_series s LEFT JOIN telemetry.metric_definitions d ON d.name = s.metric_name
WHERE s.device_id = %s
"""
# Hour buckets: the current UTC hour and the 23 before it.
_DEVICE_FIGURES = """
SELECT
    (SELECT coalesce(sum(points), 0) FROM telemetry.stats_hour
     WHERE device_id = %(d)s AND hour BETWEEN date_trunc('hour', now(), 'UTC') - interval '23 hours'
                                          AND date_trunc('hour', now(), 'UTC')),
    (SELECT count(*) FROM telemetry.alerts WHERE device_id = %(d)s AND triggered_at >= now() - interval '24 hours'),
    (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('telemetry.points'::regclass)),
    (SELECT coalesce(sum(points), 0) FROM telemetry.stats_service_hour)
"""
_SERVICE_FIGURES = """
SELECT
    (SELECT count(DISTINCT device_id) FROM telemetry.stats_series),
    (SELECT count(DISTINCT device_id) FROM telemetry.stats_series WHERE last_stored_at >= now() - interval '1 hour'),
    (SELECT count(DISTINCT device_id) FROM telemetry.stats_series WHERE last_stored_at >= now() - interval '24 hours'),
    (SELECT count(DISTINCT metric_name) FROM telemetry.stats_series),
    (SELECT coalesce(sum(points), 0) FROM telemetry.stats_service_hour),
    (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('telemetry.points'::regclass)),
    (SELECT count(*) FROM telemetry.alerts WHERE triggered_at >= now() - interval '24 hours'),
    extract(epoch FROM now() - (date_trunc('minute', now(), 'UTC') - interval '4 minutes'))::float8
"""
_RATES = """
SELECT coalesce(sum(messages), 0), coalesce(sum(points), 0), coalesce(sum(latency_messages), 0),
       coalesce(sum(latency_ms_sum), 0)::float8,
       (SELECT coalesce(sum(letters), 0) FROM telemetry.stats_dead_letter_minute
        WHERE worker = 'ingest' AND minute >= date_trunc('minute', now(), 'UTC') - interval '4 minutes')
FROM telemetry.stats_ingest_minute WHERE minute >= date_trunc('minute', now(), 'UTC') - interval '4 minutes'
"""
_BY_TYPE = """
SELECT coalesce(d.metric_type, 'undefined'), count(DISTINCT s.device_id), count(DISTINCT s.metric_name)
FROM telemetry.stats_series s LEFT JOIN telemetry.metric_definitions d ON d.name = s.metric_name
GROUP BY 1
"""
_BY_HOUR = """
SELECT h.hour, coalesce(s.points, 0)
FROM generate_series(date_trunc('hour', now(), 'UTC') - interval '23 hours', date_trunc('hour', now(), 'UTC'),
                     interval '1 hour') AS h(hour)
LEFT JOIN telemetry.stats_service_hour s ON s.hour = h.hour
ORDER BY h.hour
"""


def _empty_by_type() -> dict[str, int]:
    return {**{t.value: 0 for t in MetricType}, UNDEFINED: 0}


async def device_stats(pool: AsyncConnectionPool, device_id: str) -> DeviceStatsResponse:
    """The device's statistics; zeros for a device with no data."""
    async with pool.connection() as conn, conn.transaction():
        series = await (await conn.execute(_DEVICE_SERIES, (device_id,), prepare=True)).fetchall()
        cur = await conn.execute(_DEVICE_FIGURES, {"d": device_id}, prepare=True)
        figures: Any = await cur.fetchone()
    last_24h, alerts, table_bytes, all_points = (int(v) for v in figures)
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
        storage_size=table_bytes * points // all_points if all_points else 0,
        avg_frequency=last_24h / 1440,
        last_24h_points=last_24h,
        last_24h_alerts=alerts,
        metrics_by_type=by_type,
        top_metrics=[MetricPoints(name=row[0], points=int(row[1])) for row in top],
    )


async def service_stats(pool: AsyncConnectionPool) -> ServiceStatsResponse:
    """The whole service's statistics; zeros when nothing is stored."""
    async with pool.connection() as conn, conn.transaction():
        figures: Any = await (await conn.execute(_SERVICE_FIGURES, prepare=True)).fetchone()
        rates: Any = await (await conn.execute(_RATES, prepare=True)).fetchone()
        by_type = await (await conn.execute(_BY_TYPE, prepare=True)).fetchall()
        by_hour = await (await conn.execute(_BY_HOUR, prepare=True)).fetchall()
    devices, active, last_24h_devices, metrics, points, table_bytes, alerts, window_s = figures
    messages, written, latency_n, latency_sum, letters = rates
    devices_by_type, metrics_by_type = _empty_by_type(), _empty_by_type()
    for metric_type, type_devices, type_metrics in by_type:
        devices_by_type[metric_type] = int(type_devices)
        metrics_by_type[metric_type] = int(type_metrics)
    hours = [HourPoints(hour=hour, points=int(n)) for hour, n in by_hour]
    offered = int(messages) + int(letters)
    return ServiceStatsResponse(
        total_devices=int(devices),
        active_devices=int(active),
        total_metrics=int(metrics),
        total_data_points=int(points),
        storage_size=int(table_bytes),
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
