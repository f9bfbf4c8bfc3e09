"""E3 reads: latest value, a device's metrics, and the time-series query."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter
from psycopg_pool import AsyncConnectionPool

from gateway.deps import checked_name
from gateway.errors import ApiError, bad_request, not_found, unprocessable
from gateway.openapi import errors
from gateway.params import EndTime, Identifier, OptionalIdentifier, check_timestamps
from gateway.query_plan import Source, bucket_count, choose_source
from gateway.series_query import SeriesQuery, default_interval, run_series_query
from gateway.state import GatewayState
from gateway.typed_body import JsonBody
from gateway.views.aggregates import aggregate, prefer_exact
from gateway.views.cached_queries import query_key, read_key
from gateway.views.device_metrics import device_metrics
from gateway.views.latest import LatestReads
from telemetry_core.timebuckets import parse_duration
from telemetry_schemas.api.queries import (
    MAX_QUERY_LIMIT,
    AggregatedDataResponse,
    AggregatedPoint,
    LatestValueResponse,
    QueryRequest,
    TelemetryDataResponse,
)

_TAGS = ["queries"]
CACHED = (
    "A read of one device and one metric may be answered from the gateway's query cache: never older than the "
    "database when the request arrived (writes are announced to the gateways before they commit); a deletion by "
    "retention shows within TELEMETRY_QUERY_CACHE_TTL."
)
MAX_LOOKBACK = timedelta(days=36_500)


@get("/api/v1/telemetry/devices/{device_id:str}/metrics/{metric_name:str}/latest", tags=_TAGS, responses=errors(404),
     summary="Latest value of a metric (E3-US2)",
     description="The most recent point no older than `lookback` (default 24h; e.g. 30m, 7d, or seconds). "
     "404 when there is none. Answered from the gateway's latest-value cache when it can: never an older value "
     "than the database held when the request arrived, nor than any earlier answer.")  # fmt: skip
async def get_latest(
    device_id: Identifier,
    metric_name: Identifier,
    latest_reads: NamedDependency[LatestReads],
    lookback: FromQuery[str] = "24h",
) -> LatestValueResponse:
    """Read the latest_values read model (one dependency: gateway/views/latest.py LatestReads says why)."""
    checked_name(device_id, "device_id")
    checked_name(metric_name, "metric_name")
    since = datetime.now(UTC) - lookback_window(lookback)
    # Through the latest-value cache when it is on (gateway/latest_cache.py): the same answer as the database's.
    found = await latest_reads.latest(device_id, metric_name, since)
    if found is None:
        raise no_latest(device_id, metric_name, lookback)
    return found


def lookback_window(lookback: str) -> timedelta:
    """/latest's ``lookback`` as a duration; 400 when it is none or over 100 years (also gateway/fast_reads.py)."""
    try:
        window = parse_duration(lookback)
    except ValueError as exc:
        raise bad_request(f"lookback: {exc}") from None
    if window > MAX_LOOKBACK:
        raise bad_request("lookback: must be at most 36500d (100 years)")
    return window


def no_latest(device_id: str, metric_name: str, lookback: str) -> ApiError:
    """The 404 of /latest (also raised by gateway/fast_reads.py, which answers the same requests)."""
    return not_found(
        f"no data for metric {metric_name!r} of device {device_id!r} in the last {lookback} "
        "(use ?lookback= to look further back)"
    )


@get("/api/v1/telemetry/devices/{device_id:str}/metrics", tags=_TAGS,
     summary="Metric names a device has reported (E3-US3)",
     description="A JSON array of unique metric names, sorted; empty when the device has no data.")  # fmt: skip
async def get_device_metrics(device_id: Identifier, pool: NamedDependency[AsyncConnectionPool]) -> list[str]:
    """Read the device's metric names."""
    checked_name(device_id, "device_id")
    return await device_metrics(pool, device_id)


def _tag_filters(filters: dict[str, Any] | None) -> dict[str, str] | None:
    """``filters`` are tag equalities, either flat ({"location": "room_1"}) or under "tags"."""
    if not filters:
        return None
    tags = filters.get("tags", filters)
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise unprocessable('filters: must map tag names to string values, e.g. {"location": "room_1"}')
    return tags


@post("/api/v1/telemetry/query", status_code=200, tags=_TAGS,
      summary="Query points over a time range, raw or aggregated (E3-US1)",
      dto=JsonBody[QueryRequest], return_dto=None,
      description="Range is half-open [start_time, end_time). Without `aggregation`: raw points in time order, "
      "each with device_id and metric_name. With `aggregation` (avg, min, max, sum, count, median, p95, p99) "
      "and `interval` seconds (default by range length): one value per bucket per (device, metric), timestamp = "
      "bucket start; `count` counts every point, the other aggregations numeric points only; `unit` the metric "
      "definition's (null for a metric without one); "
      "`source` tells raw/rollup_minute/rollup_hour, and percentiles from "
      "rollups carry `relative_error`. `series` groups the same points per (device, metric). `filters` are tag "
      "equalities. limit <= 10000 (default 1000); more buckets per series than `limit` is a 422. "
      + CACHED)  # fmt: skip
async def query(data: JSONBody[QueryRequest], gw: NamedDependency[GatewayState]) -> TelemetryDataResponse:
    """Answer E3-US1."""
    return await answer_query(data, gw)


async def answer_query(body: QueryRequest, gw: GatewayState) -> TelemetryDataResponse:
    """E3-US1's answer to a decoded body (also called by gateway/fast_reads.py, which answers the same requests).

    Through the query cache (gateway/query_cache.py) when it is on.
    """

    async def compute() -> TelemetryDataResponse:
        return await run_series_query(
            gw.read_pool,
            SeriesQuery(
                metrics=body.metrics, devices=body.devices, start=body.start_time, end=body.end_time,
                aggregation=body.aggregation, interval=body.interval, tags=_tag_filters(body.filters),
                limit=body.limit, offset=body.offset,
            ),
            gw.settings.exact_percentile_points,
            gw.heavy,
            gw.definitions.get,
        )  # fmt: skip

    cached, keyed = gw.query_reads, query_key(body)
    if cached is None or keyed is None:
        return await compute()
    key, series = keyed
    return await cached.answer(key, series, (body.start_time, body.end_time), compute)


TIME_RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400, "90d": 90 * 86_400}
TimeRange = Literal["1h", "6h", "24h", "7d", "30d", "90d"]
Aggregation = Literal["avg", "min", "max", "sum", "count", "median", "p95", "p99"]


def _ceil_to(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds + (seconds if epoch % seconds or t.microsecond else 0), UTC)


@get("/api/v1/telemetry/devices/{device_id:str}/metrics/{metric_name:str}/range", tags=_TAGS,
     summary="A metric over a predefined range ending now (E3-US4)",
     description="time_range 1h, 6h or 24h returns raw points unless `aggregation` is given; 7d, 30d and 90d "
     "return `avg` per bucket by default (intervals 1h, 6h, 1d) so a long range never returns raw points by "
     "surprise. A series with no numeric points in the range (string, boolean or JSON values) has nothing to "
     "average: without `aggregation` it returns its raw points instead (up to 10,000, `aggregation` null). "
     "Aggregated ranges end at the next bucket boundary, so buckets line up with rollups. "
     + CACHED)  # fmt: skip
async def get_range(
    device_id: Identifier,
    metric_name: Identifier,
    gw: NamedDependency[GatewayState],
    time_range: FromQuery[TimeRange] = "24h",
    aggregation: FromQuery[Aggregation | None] = None,
    interval: Annotated[int | None, Parameter(ge=1, le=31_536_000)] = None,
) -> TelemetryDataResponse:
    """Answer E3-US4."""
    checked_name(device_id, "device_id")
    checked_name(metric_name, "metric_name")
    span = TIME_RANGES[time_range]
    defaulted = aggregation is None and span > 86_400
    if defaulted:
        aggregation = "avg"
    now = datetime.now(UTC)
    if aggregation is None:
        end, limit = now, 10_000
    else:
        interval = interval or default_interval(span)
        end, limit = _ceil_to(now, 3600 if interval % 3600 == 0 else 60 if interval % 60 == 0 else 1), 10_000
    start = end - timedelta(seconds=span)

    async def read(aggregation: Aggregation | None, interval: int | None, start: datetime) -> TelemetryDataResponse:
        return await run_series_query(
            gw.read_pool,
            SeriesQuery(
                metrics=[metric_name], devices=[device_id], start=start, end=end if aggregation else now,
                aggregation=aggregation, interval=interval, tags=None, limit=limit, offset=0,
            ),
            gw.settings.exact_percentile_points,
            gw.heavy,
            gw.definitions.get,
        )  # fmt: skip

    async def compute() -> TelemetryDataResponse:
        return await read(aggregation, interval, start)

    cached = gw.query_reads
    if cached is None or aggregation is None:  # raw ranges end now: never asked twice
        answer = await compute()
    else:
        key = read_key("range", device_id, metric_name, start, end, aggregation, interval)
        answer = await cached.answer(key, (device_id, metric_name), (start, end), compute)
    if defaulted and not answer.data_points:
        # Nothing numeric to average (a string, boolean or JSON metric, or no points): the raw points the client
        # asked for by giving no aggregation, rather than an empty answer for a series that has data.
        return await read(None, None, now - timedelta(seconds=span))
    return answer


@get("/api/v1/telemetry/aggregated", tags=_TAGS, summary="Aggregated data of one metric (E3-US5)",
     description="One value per `interval` bucket over [start_time, end_time). Without device_id the "
     "aggregate is across all devices. Served from rollups when the interval and range align with minutes or "
     "hours (`source`). " + CACHED)  # fmt: skip
async def get_aggregated(
    request: Request[Any, Any, Any],
    gw: NamedDependency[GatewayState],
    metric_name: Identifier,
    aggregation_type: FromQuery[Aggregation],
    interval: Annotated[int, Parameter(ge=1, le=31_536_000)],
    start_time: FromQuery[datetime],
    end_time: EndTime,
    device_id: OptionalIdentifier = None,
) -> AggregatedDataResponse:
    """Answer E3-US5."""
    checked_name(metric_name, "metric_name")
    if device_id is not None:
        checked_name(device_id, "device_id")
    check_timestamps(request, "start_time", "end_time")
    start, end = start_time, end_time
    if end <= start:
        raise unprocessable("end_time: must be after start_time")
    buckets = bucket_count(start, end, interval)
    if buckets > MAX_QUERY_LIMIT:
        raise unprocessable(
            f"interval: {interval}s over this range gives {buckets} buckets, more than {MAX_QUERY_LIMIT}"
        )
    devices = [device_id] if device_id else None

    async def compute() -> AggregatedDataResponse:
        plan = choose_source(start, end, interval, aggregation_type)
        plan = await prefer_exact(gw.read_pool, plan, aggregation_type, [metric_name], devices, start, end,
                                  gw.settings.exact_percentile_points)  # fmt: skip
        async with gw.heavy.slot(heavy=plan.source is Source.RAW):  # raw reads queue instead of draining the pool
            rows = await aggregate(
                gw.read_pool, plan, aggregation=aggregation_type, interval=interval, metrics=[metric_name],
                devices=devices, start=start, end=end, per_device=device_id is not None,
            )  # fmt: skip
        points = [AggregatedPoint(timestamp=b.timestamp, value=b.value, count=b.count) for b in rows]
        return AggregatedDataResponse(
            metric_name=metric_name, device_id=device_id, aggregation_type=aggregation_type, interval=interval,
            start_time=start, end_time=end, data_points=points, count=len(points), source=plan.source.value,
            relative_error=plan.relative_error,
        )  # fmt: skip

    cached = gw.query_reads
    if cached is None or device_id is None:  # across devices: rollup_metric_hour is written after the notices
        return await compute()
    key = read_key("aggregated", device_id, metric_name, aggregation_type, interval, start, end)
    return await cached.answer(key, (device_id, metric_name), (start, end), compute)


ROUTES = [get_latest, get_device_metrics, query, get_range, get_aggregated]
