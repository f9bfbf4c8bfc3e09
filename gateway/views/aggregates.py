"""Aggregated series over raw points or rollups: parameterised SQL from fixed fragments."""

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from gateway.query_plan import PERCENTILES, Plan, Source
from gateway.views.series_batches import batch_statement, batches_of


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
}  # `count`: _ROLLUP_COUNT (the rollups' numeric count plus the other points)


class Filter(StrEnum):
    """Which series a statement reads; each has its own statement text (never `%(devices)s IS NULL OR …`)."""

    ALL_DEVICES = "all devices"  # no device condition at all
    DEVICES = "named devices"  # device_id = ANY(…), metric_name = ANY(…)
    ONE_SERIES = "one device, one metric"  # device_id = $ AND metric_name = $: the one shape that is prepared

    @classmethod
    def of(cls, metrics: list[str], devices: list[str] | None) -> "Filter":
        """The filter of a query for these metrics and devices (None: every device)."""
        if devices is None:
            return cls.ALL_DEVICES
        return cls.ONE_SERIES if len(devices) == 1 and len(metrics) == 1 else cls.DEVICES


# Built for the filter given: a query with devices names them (the primary keys lead with device_id), one
# without reads no device column at all. Never `(%(devices)s IS NULL OR device_id = ANY(...))`: a generic
# plan of that reads every device's rows even when one is asked for. One series is two equalities, not
# one-element arrays: a generic plan cannot know how long an array parameter is (PostgreSQL guesses 10
# elements, so 10 x 10 index descents of the primary key), but with `device_id = $ AND metric_name = $` the
# primary key matches its two leading columns exactly: its conditions are a superset of the plain
# (metric, bucket) index's and both read the heap, so the generic plan is the primary key, as the custom one.
# A covering (metric, bucket) index holding device_id (migration 0014's) would undercut it with an index-only
# scan again: tests/integration/test_generic_plans.py checks every prepared statement's generic plan.
_TIME = "{p}{time} >= %(start)s AND {p}{time} < %(end)s"
_FILTERS = {
    Filter.ALL_DEVICES: "{p}metric_name = ANY(%(metrics)s) AND " + _TIME,
    Filter.DEVICES: "{p}metric_name = ANY(%(metrics)s) AND " + _TIME + " AND {p}device_id = ANY(%(devices)s)",
    Filter.ONE_SERIES: "{p}device_id = %(device)s AND {p}metric_name = %(metric)s AND " + _TIME,
}


def _filter(time: str, series: Filter, prefix: str = "") -> sql.SQL:
    return sql.SQL(_FILTERS[series].format(p=prefix, time=time))  # built from the constants above only


_RAW = (
    "SELECT date_bin(%(interval)s, time, %(start)s) AS b, {device} AS d, metric_name, {expr}, count(*) "
    "FROM telemetry.points WHERE {numeric}{filter}{tags} "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
_NUMERIC = "value_type IN (0, 1) AND "  # every aggregation but `count`, which counts every point (E3-US1 AC4)
_TAGS = " AND tags @> %(tags)s::jsonb"
# The rollups count numeric points only: a count adds the other points of the range, which the partial indexes
# of migration 0021 hold (a numeric series finds none there, in one index descent per partition).
_ROLLUP_COUNT = (
    "SELECT b, d, metric_name, sum(n)::float8, sum(n)::bigint FROM ("
    "SELECT date_bin(%(interval)s, bucket, %(start)s) AS b, {device} AS d, metric_name, count AS n "
    "FROM {table} WHERE {bucket_filter} "
    "UNION ALL "
    "SELECT date_bin(%(interval)s, time, %(start)s), {device}, metric_name, count(*) "
    "FROM telemetry.points WHERE value_type NOT IN (0, 1) AND {time_filter} GROUP BY 1, 2, 3"
    ") c GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
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
_TABLES = {Source.MINUTE: "telemetry.rollup_minute", Source.HOUR: "telemetry.rollup_hour"}
# An hour's sketch is its row's and its pending ones' (migration 0023: batches merged in later, by compaction).
_HOUR_SKETCHES = (
    "(SELECT device_id, metric_name, bucket, sketch FROM telemetry.rollup_hour "
    "UNION ALL SELECT device_id, metric_name, bucket, sketch FROM telemetry.rollup_hour_pending)"
)
# Hours over every device, per metric (migration 0014): count / sum / min / max, no sketches. Reported as
# source rollup_hour: the same hour buckets, summed over devices beforehand.
_METRIC_HOURS = "telemetry.rollup_metric_hour"


def _table(source: Source, devices: bool, per_device: bool, aggregation: str) -> sql.SQL:
    """The rollup table: the per-metric hours when the answer merges every device anyway (and needs no sketch)."""
    if source is Source.HOUR and not devices and not per_device and aggregation not in PERCENTILES:
        return sql.SQL(_METRIC_HOURS)
    return sql.SQL(_TABLES[source])


def _prepare(source: Source, series: Filter) -> bool | None:
    """Whether to run the statement as a server-side prepared statement (None: psycopg's default).

    True for one series: its generic plan is the primary key with device, metric and time all index
    conditions (tests/integration/test_generic_plans.py checks it), so PostgreSQL may reuse it and a request
    skips parse and planning: q2's statement at 0.5-0.8x of the unnamed one's p50, same run
    (docs/benchmarks-q2-prepare.md).

    False for a rollup statement with `device_id = ANY(…)`: psycopg prepares a statement run 5 times on a
    connection, and PostgreSQL then switches to a generic plan when its estimate is lower than the custom
    plans'. With migration 0014's covering (metric, bucket) index and a long range it did: an index-only scan
    with the device as a *filter*, reading every device's rows of the metric (25,032 rows removed for one
    30-day series at 150 devices: 14-18 ms instead of 0.1 ms through the primary key). With 0017's plain
    index the generic plan is the primary key at 150-1,000 devices but that index, device as a filter, at 20.
    Which index it picks is the statistics' choice, so these statements stay unnamed: planned with their
    values every time (~0.1 ms).
    """
    if series is Filter.ONE_SERIES:
        return True
    return False if series is Filter.DEVICES and source is not Source.RAW else None


@functools.cache  # a few dozen combinations; composing the statement cost more than the rest of the handler
def _statement(plan: Plan, aggregation: str, per_device: bool, series: Filter, tags: bool = False) -> sql.Composed:
    """The statement for this filter: device and tag conditions only when the query has them."""
    devices = series is not Filter.ALL_DEVICES
    device = sql.SQL("device_id" if per_device else "NULL::text")
    if plan.source is Source.RAW:
        return sql.SQL(_RAW).format(
            device=device, expr=sql.SQL(_RAW_EXPR[aggregation]), filter=_filter("time", series),
            numeric=sql.SQL("" if aggregation == "count" else _NUMERIC), tags=sql.SQL(_TAGS if tags else ""),
        )  # fmt: skip
    table = _table(plan.source, devices, per_device, aggregation)
    if aggregation in PERCENTILES:
        dev = sql.SQL("r.device_id" if per_device else "NULL::text")
        sketches = sql.SQL(_HOUR_SKETCHES) if plan.source is Source.HOUR else table
        return sql.SQL(_SKETCH).format(device=dev, table=sketches, filter=_filter("bucket", series, "r."))
    if aggregation == "count":
        return sql.SQL(_ROLLUP_COUNT).format(
            device=device, table=table, bucket_filter=_filter("bucket", series), time_filter=_filter("time", series)
        )
    return sql.SQL(_ROLLUP).format(
        device=device, expr=sql.SQL(_ROLLUP_EXPR[aggregation]), table=table, filter=_filter("bucket", series)
    )


def _params(
    series: Filter, metrics: list[str], devices: list[str] | None, start: datetime, end: datetime
) -> dict[str, object]:
    """The filter's parameters, under the names its statement text uses."""
    if series is Filter.ONE_SERIES and devices:
        return {"device": devices[0], "metric": metrics[0], "start": start, "end": end}
    return {"metrics": metrics, "devices": devices, "start": start, "end": end}


@functools.cache
def _query(plan: Plan, aggregation: str, per_device: bool, series: Filter, tags: bool) -> bytes:
    """The statement rendered once: given a Composed, psycopg renders it again on every execute (8 µs of 14)."""
    return _statement(plan, aggregation, per_device, series, tags).as_bytes(None)


@functools.cache
def _batched(plan: Plan, aggregation: str, per_device: bool) -> bytes:
    """The one-series statement over many series at once (series_batches.batch_statement), rendered once."""
    return batch_statement(_query(plan, aggregation, per_device, Filter.ONE_SERIES, False))


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
    series = Filter.of(metrics, devices)
    params = _params(series, metrics, devices, start, end)
    params |= {"interval": timedelta(seconds=interval), "q": PERCENTILES.get(aggregation), "tags": tags}
    statement = _query(plan, aggregation, per_device, series, tags is not None)
    batches = batches_of(pool)
    if batches is not None and series is Filter.ONE_SERIES and tags is None and plan.source is not Source.RAW:
        # With others of its shape in flight, one statement answers them all (gateway/views/series_batches.py).
        shape = (plan, aggregation, per_device, interval)
        rows = await batches.rows(shape, statement, _batched(plan, aggregation, per_device), params)
    else:
        async with pool.connection() as conn:
            cur = await conn.execute(statement, params, prepare=_prepare(plan.source, series))
            rows = await cur.fetchall()
    return [Bucket(b, d, m, None if v is None else float(v), int(n)) for b, d, m, v, n in rows]


_POINTS_IN = "SELECT coalesce(sum(count), 0) FROM {table} WHERE {filter}"


@functools.cache
def _points_in(source: Source, series: Filter) -> bytes:
    """How many points the rollups hold for this filter (prefer_exact's check), rendered once."""
    table = _table(source, series is not Filter.ALL_DEVICES, False, "count")
    return sql.SQL(_POINTS_IN).format(table=table, filter=_filter("bucket", series)).as_bytes(None)


async def prefer_exact(
    pool: AsyncConnectionPool, plan: Plan, aggregation: str, metrics: list[str], devices: list[str] | None,
    start: datetime, end: datetime, exact_up_to: int,
) -> Plan:  # fmt: skip
    """Percentiles from sketches are approximate: when the raw points are few, read them instead.

    The rollups themselves say how many points the range holds, so the check is one small query.
    """
    if plan.source is Source.RAW or aggregation not in PERCENTILES or exact_up_to <= 0:
        return plan
    series = Filter.of(metrics, devices)
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                _points_in(plan.source, series), _params(series, metrics, devices, start, end),
                prepare=_prepare(plan.source, series),
            )
        ).fetchone()  # fmt: skip
    points = int(row[0]) if row else 0
    return Plan(Source.RAW, None) if points <= exact_up_to else plan
