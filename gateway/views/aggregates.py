"""Aggregated series over raw points or rollups: parameterised SQL from fixed fragments."""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from gateway.query_plan import PERCENTILES, Plan, Source


@dataclass(frozen=True)
class Bucket:
    """One aggregated value: bucket start, series (device may be None = all devices), value, points in it."""

    timestamp: datetime
    device_id: str | None
    metric_name: str
    value: float | None
    count: int


_RAW_EXPR = {
    "avg": "avg(value_num)",
    "min": "min(value_num)",
    "max": "max(value_num)",
    "sum": "sum(value_num)",
    "count": "count(*)::float8",
    "median": "percentile_disc(0.5) WITHIN GROUP (ORDER BY value_num)",
    "p95": "percentile_disc(0.95) WITHIN GROUP (ORDER BY value_num)",
    "p99": "percentile_disc(0.99) WITHIN GROUP (ORDER BY value_num)",
}
_ROLLUP_EXPR = {
    "avg": "sum(sum) / nullif(sum(count), 0)",
    "min": "min(min)",
    "max": "max(max)",
    "sum": "sum(sum)",
    "count": "sum(count)::float8",
}
_FILTER = (
    "metric_name = ANY(%(metrics)s) AND (%(devices)s::text[] IS NULL OR device_id = ANY(%(devices)s)) "
    "AND {time} >= %(start)s AND {time} < %(end)s"
)
_RAW = (
    "SELECT date_bin(%(interval)s, time, %(start)s) AS b, {device} AS d, metric_name, {expr}, count(*) "
    "FROM telemetry.points WHERE value_type IN (0, 1) AND {filter} "
    "AND (%(tags)s::jsonb IS NULL OR tags @> %(tags)s::jsonb) "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
_ROLLUP = (
    "SELECT date_bin(%(interval)s, bucket, %(start)s) AS b, {device} AS d, metric_name, {expr}, sum(count)::bigint "
    "FROM {table} WHERE {filter} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
# Percentiles from sketches: merge the bucket counts per query bucket, then take the first sketch
# bucket whose cumulative count reaches the nearest rank ceil(q * n) (what percentile_disc returns).
_SKETCH = """
WITH cells AS (
    SELECT date_bin(%(interval)s, r.bucket, %(start)s) AS b, {device} AS d, r.metric_name, e.key,
           sum(e.value::bigint) AS n
    FROM {table} r, jsonb_each_text(r.sketch) e
    WHERE {filter}
    GROUP BY 1, 2, 3, 4
), ranked AS (
    SELECT b, d, metric_name, telemetry.dd_value(key) AS v,
           sum(n) OVER (PARTITION BY b, d, metric_name ORDER BY telemetry.dd_value(key)) AS cum,
           sum(n) OVER (PARTITION BY b, d, metric_name) AS total
    FROM cells
)
SELECT DISTINCT ON (b, d, metric_name) b, d, metric_name, v, total::bigint
FROM ranked WHERE cum >= greatest(ceil(%(q)s * total), 1)
ORDER BY b, d, metric_name, cum
"""
_SKETCH_FILTER = (
    "r.metric_name = ANY(%(metrics)s) AND (%(devices)s::text[] IS NULL OR r.device_id = ANY(%(devices)s)) "
    "AND r.bucket >= %(start)s AND r.bucket < %(end)s"
)
_TABLES = {Source.MINUTE: "telemetry.rollup_minute", Source.HOUR: "telemetry.rollup_hour"}


@functools.cache  # a few dozen combinations; composing the statement cost more than the rest of the handler
def _statement(plan: Plan, aggregation: str, per_device: bool) -> sql.Composed:
    device = sql.SQL("device_id" if per_device else "NULL::text")
    if plan.source is Source.RAW:
        filt = sql.SQL(_FILTER.format(time="time"))
        return sql.SQL(_RAW).format(device=device, expr=sql.SQL(_RAW_EXPR[aggregation]), filter=filt)
    table = sql.SQL(_TABLES[plan.source])
    if aggregation in PERCENTILES:
        dev = sql.SQL("r.device_id" if per_device else "NULL::text")
        return sql.SQL(_SKETCH).format(device=dev, table=table, filter=sql.SQL(_SKETCH_FILTER))
    filt = sql.SQL(_FILTER.format(time="bucket"))
    return sql.SQL(_ROLLUP).format(device=device, expr=sql.SQL(_ROLLUP_EXPR[aggregation]), table=table, filter=filt)


async def aggregate(
    pool: AsyncConnectionPool,
    plan: Plan,
    *,
    aggregation: str,
    interval: int,
    metrics: list[str],
    devices: list[str] | None,
    start: datetime,
    end: datetime,
    per_device: bool = True,
    tags: object = None,
) -> list[Bucket]:
    """One value per (bucket, series), in time order; empty buckets are absent."""
    params = {
        "interval": timedelta(seconds=interval),
        "metrics": metrics,
        "devices": devices,
        "start": start,
        "end": end,
        "q": PERCENTILES.get(aggregation),
        "tags": tags,
    }
    async with pool.connection() as conn:
        cur = await conn.execute(_statement(plan, aggregation, per_device), params)
        rows = await cur.fetchall()
    return [Bucket(b, d, m, None if v is None else float(v), int(n)) for b, d, m, v, n in rows]


_POINTS_IN = (
    "SELECT coalesce(sum(count), 0) FROM {table} WHERE metric_name = ANY(%(metrics)s) "
    "AND (%(devices)s::text[] IS NULL OR device_id = ANY(%(devices)s)) AND bucket >= %(start)s AND bucket < %(end)s"
)


async def prefer_exact(
    pool: AsyncConnectionPool, plan: Plan, aggregation: str, metrics: list[str], devices: list[str] | None,
    start: datetime, end: datetime, exact_up_to: int,
) -> Plan:  # fmt: skip
    """Percentiles from sketches are approximate: when the raw points are few, read them instead.

    The rollups themselves say how many points the range holds, so the check is one small query.
    """
    if plan.source is Source.RAW or aggregation not in PERCENTILES or exact_up_to <= 0:
        return plan
    statement = sql.SQL(_POINTS_IN).format(table=sql.SQL(_TABLES[plan.source]))
    params = {"metrics": metrics, "devices": devices, "start": start, "end": end}
    async with pool.connection() as conn:
        row = await (await conn.execute(statement, params)).fetchone()
    points = int(row[0]) if row else 0
    return Plan(Source.RAW, None) if points <= exact_up_to else plan
