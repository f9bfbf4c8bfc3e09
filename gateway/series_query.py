"""Answer a time-series query (raw or aggregated) as a TelemetryDataResponse."""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gateway.errors import unprocessable
from gateway.heavy_queries import HeavyQueries
from gateway.query_plan import Plan, Source, bucket_count, choose_source
from gateway.views.aggregates import aggregate, prefer_exact
from gateway.views.history import raw_points
from telemetry_schemas.api.queries import DataPoint, Series, TelemetryDataResponse
from telemetry_schemas.events import MetricDefined

# A default bucket size per range length, so a long range never returns raw points by surprise.
_DEFAULT_INTERVALS = ((3600, 60), (6 * 3600, 300), (86_400, 900), (7 * 86_400, 3600), (30 * 86_400, 21_600))


def default_interval(span_s: float) -> int:
    """A bucket size giving at most ~170 buckets for the common ranges (1h … 90d)."""
    for longest, interval in _DEFAULT_INTERVALS:
        if span_s <= longest:
            return interval
    return 86_400


@dataclass(frozen=True)
class SeriesQuery:
    """A validated query."""

    metrics: list[str]
    devices: list[str] | None
    start: datetime
    end: datetime
    aggregation: str | None
    interval: int | None
    tags: dict[str, str] | None
    limit: int
    offset: int


def _series(points: list[DataPoint]) -> list[Series]:
    grouped: dict[tuple[str, str], list[DataPoint]] = {}
    for p in points:
        grouped.setdefault((p.device_id, p.metric_name), []).append(p)
    return [Series(device_id=d, metric_name=m, data_points=pts) for (d, m), pts in grouped.items()]


def _defined_unit(defined: Callable[[str], MetricDefined | None] | None, metric: str) -> str | None:
    definition = defined(metric) if defined is not None else None
    return definition.unit if definition is not None else None


async def run_series_query(
    pool: AsyncConnectionPool,
    q: SeriesQuery,
    exact_up_to: int,
    heavy: HeavyQueries | None = None,
    defined: Callable[[str], MetricDefined | None] | None = None,
) -> TelemetryDataResponse:
    """Raw points in time order, or one value per bucket per (device, metric) when aggregating.

    An aggregation over raw points waits for a slot of ``heavy`` (gateway/heavy_queries.py). ``defined``: the
    metric definitions; an aggregated point carries its metric's defined unit (rollups keep no unit, and the
    points of one bucket may not agree on one), None for a metric without a definition or unit.
    """
    if q.end <= q.start:
        raise unprocessable("end_time: must be after start_time")
    plan = Plan(Source.RAW, None)
    interval = q.interval
    if q.aggregation is None:
        points = await raw_points(
            pool, metrics=q.metrics, devices=q.devices, start=q.start, end=q.end, tags=q.tags,
            limit=q.limit, offset=q.offset,
        )  # fmt: skip
    else:
        interval = interval or default_interval((q.end - q.start).total_seconds())
        buckets = bucket_count(q.start, q.end, interval)
        if buckets > q.limit:
            raise unprocessable(
                f"interval: {interval}s over this range gives {buckets} buckets per series, more than limit "
                f"{q.limit}; use a larger interval or a shorter range"
            )
        # Rollups carry no tags: a tag filter must read raw points.
        plan = Plan(Source.RAW, None) if q.tags else choose_source(q.start, q.end, interval, q.aggregation)
        plan = await prefer_exact(pool, plan, q.aggregation, q.metrics, q.devices, q.start, q.end, exact_up_to)
        gate = heavy.slot(heavy=plan.source is Source.RAW) if heavy is not None else contextlib.nullcontext()
        async with gate:
            rows = await aggregate(
                pool, plan, aggregation=q.aggregation, interval=interval, metrics=q.metrics, devices=q.devices,
                start=q.start, end=q.end, tags=Jsonb(q.tags) if q.tags else None,
            )  # fmt: skip
        units = {m: _defined_unit(defined, m) for m in q.metrics}
        points = [
            DataPoint(timestamp=b.timestamp, device_id=b.device_id or "", metric_name=b.metric_name, value=b.value,
                      unit=units.get(b.metric_name))
            for b in rows[q.offset : q.offset + q.limit]
        ]  # fmt: skip
    devices = q.devices or sorted({p.device_id for p in points})
    return TelemetryDataResponse(
        device_id=devices[0] if len(devices) == 1 else "multiple",
        metric_name=q.metrics[0] if len(q.metrics) == 1 else "multiple",
        data_points=points,
        count=len(points),
        aggregation=q.aggregation,
        interval=interval,
        start_time=q.start,
        end_time=q.end,
        limit=q.limit,
        offset=q.offset,
        series=_series(points),
        source=plan.source.value,
        relative_error=plan.relative_error,
    )
