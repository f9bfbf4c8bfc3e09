"""Time-series queries: a week of points per series, loaded over HTTP, then queries from rollups and raw points.

Data set: ``devices`` x ``metrics`` series, one point every ``step`` minutes over the 7 days before the
current hour, always on a whole minute and never in the first or last minute of the 7 days. Loaded in
small batches (one device, a few time steps x its metrics) through the real path, so the
ingest worker stores them and the projection worker builds the per-minute / per-hour rollups; queries
start only once every durable consumer (``projection_rollups`` included) has acknowledged everything.

Each query runs twice in the same run: hour-aligned (the gateway answers from ``rollup_hour``, or for a
percentile over few points exactly from raw points) and with start and end 30 s earlier (no longer
aligned: always answered from raw points). Since every point is on a whole minute, the bucket
[h - 30 s, h + 3570 s) holds exactly the points of the hour [h, h + 1 h), so both answers must agree:
averages and counts to float rounding, percentiles within the sketch's relative error (or exactly, when
both come from raw points). That is checked before the clock starts.
"""

import asyncio
import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import msgspec
import psycopg

from gateway.query_plan import SKETCH_RELATIVE_ERROR
from tests.bench.backlog import Backlog
from tests.bench.client import Poster
from tests.bench.data import VALUE_MAX, VALUE_MIN, rfc3339
from tests.bench.e2e import post_batches, wait_queryable
from tests.bench.stats import percentile

QUERY_PATH = "/api/v1/telemetry/query"
AGGREGATED_PATH = "/api/v1/telemetry/aggregated"
CSV_PATH = "/api/v1/telemetry/export/csv"
WEEK = timedelta(days=7)
DAY = timedelta(days=1)
MONTH = timedelta(days=30)
SHIFT = timedelta(seconds=-30)  # unaligns a range without changing which points a bucket holds
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Dataset:
    """What is loaded: devices x metrics series over [start, end) = the 7 days before the current hour."""

    devices: int
    metrics: int
    step_min: int
    end: datetime

    @classmethod
    def plan(cls, points: int, metrics: int, step_min: int) -> "Dataset":
        per_series = (7 * 1440 - 2) // step_min + 1
        devices = max(1, round(points / (metrics * per_series)))
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(devices, metrics, step_min, end)

    @property
    def start(self) -> datetime:
        return self.end - WEEK

    @property
    def per_series(self) -> int:
        """Points per series: minutes 1, 1 + step, … of the week, all before its last minute."""
        return (7 * 1440 - 2) // self.step_min + 1

    @property
    def points(self) -> int:
        return self.devices * self.metrics * self.per_series

    @cached_property
    def device_ids(self) -> list[str]:
        return [f"bq{d:04d}" for d in range(self.devices)]  # short: the CSV export lists them all in its URL

    @cached_property
    def metric_names(self) -> list[str]:
        return [f"bench-q-m{m:02d}" for m in range(self.metrics)]

    def times(self) -> list[datetime]:
        return [self.start + timedelta(minutes=1 + k * self.step_min) for k in range(self.per_series)]

    def in_range(self, start: datetime, end: datetime) -> int:
        """Points of one series in [start, end)."""
        return sum(start <= t < end for t in self.times())


def load_batches(ds: Dataset, batch_size: int) -> Iterator[tuple[str, bytes]]:
    """(device, body) per batch, encoded on demand; batch i of every device, then batch i + 1 …

    A batch holds consecutive time steps of one device with all its metrics, so the minutes and hours it
    touches are few and complete (the rollups recompute each once per projection batch).
    """
    stamps = [rfc3339(t) for t in ds.times()]
    metrics = ds.metric_names
    steps = max(1, batch_size // ds.metrics)
    rngs = [random.Random(9000 + d) for d in range(ds.devices)]
    for first in range(0, ds.per_series, steps):
        for d, device_id in enumerate(ds.device_ids):
            uniform = rngs[d].uniform
            points = [
                {"timestamp": stamps[k], "metric_name": m, "value": round(uniform(VALUE_MIN, VALUE_MAX), 4)}
                for k in range(first, min(first + steps, ds.per_series))
                for m in metrics
            ]
            yield device_id, _encoder.encode({"data_points": points})


@dataclass(frozen=True)
class LoadResult:
    points: int
    acked_s: float  # first send → last HTTP 200
    queryable_s: float  # first send → every point in telemetry.points
    caught_up_s: float  # first send → every consumer (rollups, latest values, alert engine) idle
    rollup_minutes: int  # rows of telemetry.rollup_minute for the data set
    rollup_hours: int

    @property
    def queryable_rate(self) -> float:
        return self.points / self.queryable_s

    @property
    def caught_up_rate(self) -> float:
        return self.points / self.caught_up_s


async def load(
    client: Poster, database_url: str, backlog: Backlog, ds: Dataset, *, batch_size: int, concurrency: int,
    timeout_s: float,
) -> LoadResult:  # fmt: skip
    """Post the data set; return once every consumer has caught up; check the rollups hold every point."""
    start = time.perf_counter()
    acked = await post_batches(client, load_batches(ds, batch_size), concurrency)
    acked_at = time.perf_counter()
    if acked != ds.points:
        raise RuntimeError(f"{acked} query data points acknowledged, {ds.points} sent")
    queryable_at = await wait_queryable(database_url, backlog, ds.device_ids, acked, timeout_s)
    await backlog.wait_idle(timeout_s)
    caught_up_at = time.perf_counter()
    minutes, hours = await _rollup_rows(database_url, ds)
    return LoadResult(acked, acked_at - start, queryable_at - start, caught_up_at - start, minutes, hours)


_ROLLUP_ROWS = {
    "telemetry.rollup_minute": "SELECT count(*), coalesce(sum(count), 0) FROM telemetry.rollup_minute "
    "WHERE metric_name = ANY(%s)",
    "telemetry.rollup_hour": "SELECT count(*), coalesce(sum(count), 0) FROM telemetry.rollup_hour "
    "WHERE metric_name = ANY(%s)",
}


async def _rollup_rows(database_url: str, ds: Dataset) -> tuple[int, int]:
    """Rows of the data set in rollup_minute and rollup_hour; both must count every point."""
    out = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for table, statement in _ROLLUP_ROWS.items():
            cur = await conn.execute(statement, (ds.metric_names,))
            rows, points = await cur.fetchone() or (0, 0)
            if points != ds.points:
                raise RuntimeError(f"{table} counts {points} points of the {ds.points} loaded")
            out.append(rows)
    return out[0], out[1]


# --- the queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One measured query kind: how to build request ``i`` for a source, and what answers it."""

    key: str
    title: str
    target_p99_s: float | None
    # Sources the product may answer the hour-aligned request from. Percentiles over few points are read
    # exactly from raw points (TELEMETRY_EXACT_PERCENTILE_POINTS), so the aligned p99 may be "raw" too.
    aligned_sources: tuple[str, ...] = ("rollup_hour",)

    def request(self, ds: Dataset, i: int, raw: bool) -> tuple[str, str, bytes | None]:
        """(method, path, body) of the i-th request; raw: the range shifted 30 s, off the hour grid."""
        shift = SHIFT if raw else timedelta(0)
        devices, metrics = ds.device_ids, ds.metric_names
        device = devices[(i * 7919) % len(devices)]
        metric = metrics[i % len(metrics)]
        if self.key == "series_24h":
            body = {
                "devices": [device], "metrics": [metric], "aggregation": "avg", "interval": 3600,
                "start_time": _z(ds.end - DAY + shift), "end_time": _z(ds.end + shift),
            }  # fmt: skip
            return "POST", QUERY_PATH, _encoder.encode(body)
        if self.key == "all_7d":
            params = {
                "metric_name": metric, "aggregation_type": "avg", "interval": 3600,
                "start_time": _z(ds.start + shift), "end_time": _z(ds.end + shift),
            }  # fmt: skip
            return "GET", f"{AGGREGATED_PATH}?{urlencode(params)}", None
        if self.key == "p99_30d":
            body = {
                "devices": [device], "metrics": [metric], "aggregation": "p99",
                "interval": int(MONTH.total_seconds()),
                "start_time": _z(ds.end - MONTH + shift), "end_time": _z(ds.end + shift),
            }  # fmt: skip
            return "POST", QUERY_PATH, _encoder.encode(body)
        raise ValueError(self.key)


QUERIES = (
    Query("series_24h", "24 h of one series, avg in 1 h buckets (POST /query)", 0.020),
    Query("all_7d", "7 d avg across all devices, 1 h buckets (GET /aggregated)", 0.100),
    Query("p99_30d", "p99 over 30 d of one series, one bucket (POST /query)", 0.050, ("rollup_hour", "raw")),
)


async def _ask(client: Poster, method: str, path: str, body: bytes | None) -> dict[str, Any]:
    status, data = await (client.post(path, body) if method == "POST" and body is not None else client.get(path))
    if status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {status}: {data[:300]!r}")
    return _decoder.decode(data)


def _allowed(query: Query, raw: bool) -> tuple[str, ...]:
    return ("raw",) if raw else query.aligned_sources


@dataclass
class QueryRun:
    """One query kind, hour-aligned or shifted 30 s (raw), at a fixed concurrency."""

    key: str
    raw: bool  # the range shifted 30 s off the hour grid: always answered from raw points
    sources: dict[str, int]  # what answered, per response ("source")
    concurrency: int
    seconds: float
    latencies: list[float]
    warmups: int = 0  # warm-up requests (in the run's CPU window, not in its latencies)
    errors: list[float] = field(default_factory=list)  # times of the requests answered 503 (pool timeout)
    cpu: Any = None  # PhaseCpu of the run (set by the caller)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def requests(self) -> int:
        return len(self.latencies) + len(self.errors)

    @property
    def source(self) -> str:
        """What answered: one source, or several with their counts."""
        if len(self.sources) == 1:
            return next(iter(self.sources))
        return ", ".join(f"{k} ({v})" for k, v in sorted(self.sources.items()))


async def run_query(
    client: Poster,
    ds: Dataset,
    query: Query,
    *,
    raw: bool,
    requests: int,
    concurrency: int,
    max_s: float,
    min_s: float = 0.0,
    warmup: int = 2,
) -> QueryRun:
    """``requests`` requests from ``concurrency`` closed-loop clients; every answer's ``source`` is checked.

    The requests are built before the clock starts, and answers are checked by a byte search rather than
    decoded, so the benchmark client takes as little of the shared CPU as it can. No request starts more
    than ``max_s`` after the clock (slow raw queries over a big table would otherwise take minutes): the
    run then has fewer than ``requests`` latencies. Fast queries go on (cycling over the same requests) until
    ``min_s`` has passed, so that the run's CPU window is long enough to mean something. A 503 (the gateway waited ``TELEMETRY_DB_TIMEOUT`` for
    one of its pooled connections) is counted in ``errors`` and its time kept apart; anything else fails.
    """
    allowed = _allowed(query, raw)
    markers = [(name, b'"source":"%s"' % name.encode()) for name in allowed]
    sources: dict[str, int] = {}
    per_client = -(-requests // concurrency)
    plans = [
        [query.request(ds, c + k * concurrency, raw) for k in range(warmup + per_client)] for c in range(concurrency)
    ]
    latencies: list[float] = []
    errors: list[float] = []
    warmups = 0

    async def one(plan: list[tuple[str, str, bytes | None]], record: bool, deadline: float, until: float) -> None:
        nonlocal warmups
        for n, (method, path, body) in enumerate(itertools.cycle(plan)):
            t = time.perf_counter()
            if t > deadline or (n >= len(plan) and t > until):
                return
            warmups += not record
            status, data = await (client.post(path, body) if body is not None else client.get(path))
            if status == 503:
                if record:
                    errors.append(time.perf_counter() - t)
                continue
            if record:
                latencies.append(time.perf_counter() - t)
            source = next((name for name, marker in markers if marker in data), None)
            if status != 200 or source is None or b'"data_points":[]' in data:
                raise RuntimeError(f"{query.key} {method} {path}: HTTP {status}, expected {allowed}: {data[:300]!r}")
            if record:
                sources[source] = sources.get(source, 0) + 1

    now = time.perf_counter()
    await asyncio.gather(*(one(plan[:warmup], False, now + max_s / 4, now) for plan in plans))
    t0 = time.perf_counter()
    await asyncio.gather(*(one(plan[warmup:], True, t0 + max_s, t0 + min_s) for plan in plans))
    return QueryRun(query.key, raw, sources, concurrency, time.perf_counter() - t0, latencies, warmups, errors)


# --- agreement of rollup and raw answers ---------------------------------------------------------


@dataclass
class Agreement:
    """How closely the rollup answers matched the raw ones (checked before timing)."""

    compared: int = 0  # buckets compared
    max_rel_avg: float = 0.0  # largest relative difference of an avg
    counts_equal: bool = True  # /aggregated counts, bucket by bucket
    max_rel_p99: float = 0.0  # largest relative difference of a p99 (bound: SKETCH_RELATIVE_ERROR from sketches)
    p99_sources: set[str] = field(default_factory=set)  # what answered the aligned p99 requests
    points_counted: int = 0  # sum of /aggregated counts over the week, one metric (expected devices x per_series)
    problems: list[str] = field(default_factory=list)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


async def check_agreement(client: Poster, ds: Dataset, samples: int = 4) -> Agreement:
    """Rollup vs raw answers of every query kind for a few series; raises when they disagree."""
    agree = Agreement()
    for query in QUERIES:
        for i in range(samples):
            rolled = await _ask(client, *query.request(ds, i, raw=False))
            raw = await _ask(client, *query.request(ds, i, raw=True))
            for answer, allowed in ((rolled, query.aligned_sources), (raw, ("raw",))):
                if answer.get("source") not in allowed:
                    agree.problems.append(f"{query.key}: source {answer.get('source')!r}, expected {allowed}")
            a, b = rolled["data_points"], raw["data_points"]
            if len(a) != len(b):
                agree.problems.append(f"{query.key} #{i}: {len(a)} rollup buckets, {len(b)} raw")
                continue
            for x, y in zip(a, b, strict=True):
                agree.compared += 1
                shifted = datetime.fromisoformat(x["timestamp"]) + SHIFT
                if datetime.fromisoformat(y["timestamp"]) != shifted:
                    agree.problems.append(f"{query.key} #{i}: bucket {y['timestamp']} for {x['timestamp']}")
                rel = _rel(x["value"], y["value"])
                if query.key == "p99_30d":
                    agree.max_rel_p99 = max(agree.max_rel_p99, rel)
                    agree.p99_sources.add(rolled["source"])
                    bound = SKETCH_RELATIVE_ERROR if rolled["source"] != "raw" else 0.0  # raw: the same points
                    if rel > bound + 1e-12:
                        agree.problems.append(f"p99 #{i}: rollup {x['value']} vs raw {y['value']}")
                else:
                    agree.max_rel_avg = max(agree.max_rel_avg, rel)
                    if rel > 1e-9:
                        agree.problems.append(f"{query.key} #{i}: avg {x['value']} vs raw {y['value']}")
                if query.key == "all_7d" and x["count"] != y["count"]:
                    agree.counts_equal = False
                    agree.problems.append(f"all_7d #{i}: count {x['count']} vs raw {y['count']}")
            if query.key == "all_7d" and i == 0:
                agree.points_counted = sum(x["count"] for x in a)
                if agree.points_counted != ds.devices * ds.per_series:
                    agree.problems.append(
                        f"all_7d: {agree.points_counted} points counted, {ds.devices * ds.per_series} loaded"
                    )
    if agree.problems:
        raise RuntimeError("rollup and raw answers disagree: " + "; ".join(agree.problems[:5]))
    return agree


# --- CSV export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvRun:
    """One export kind, repeated sequentially (one client, the body read to its end)."""

    key: str
    title: str
    rows: int  # over all repeats
    bytes: int
    seconds: float
    latencies: list[float]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def rows_each(self) -> int:
        return self.rows // max(len(self.latencies), 1)


def _csv_path(devices: list[str], metrics: list[str], start: datetime, end: datetime) -> str:
    params = {
        "device_ids": ",".join(devices), "metric_names": ",".join(metrics),
        "start_time": _z(start), "end_time": _z(end),
    }  # fmt: skip
    return f"{CSV_PATH}?{urlencode(params, safe=',')}"


async def run_csv(client: Poster, ds: Dataset, repeats: int) -> list[CsvRun]:
    """One device's whole week (all metrics), and one metric of every device over the last day."""
    devices, metrics = ds.device_ids, ds.metric_names
    kinds = (
        ("device_week", f"one device, {ds.metrics} metrics, 7 d",
         lambda i: (_csv_path([devices[(i * 7919) % len(devices)]], metrics, ds.start, ds.end),
                    ds.metrics * ds.per_series)),
        ("metric_day", f"{ds.devices} devices, 1 metric, 24 h",
         lambda i: (_csv_path(devices, [metrics[i % len(metrics)]], ds.end - DAY, ds.end),
                    ds.devices * ds.in_range(ds.end - DAY, ds.end))),
    )  # fmt: skip
    out = []
    for key, title, make in kinds:
        await client.get(make(repeats)[0])  # warm-up
        rows = size = 0
        latencies = []
        t0 = time.perf_counter()
        for i in range(repeats):
            path, expected = make(i)
            t = time.perf_counter()
            status, data = await client.get(path)
            latencies.append(time.perf_counter() - t)
            got = data.count(b"\n") - 1  # less the header
            if status != 200 or got != expected:
                raise RuntimeError(f"CSV {key}: HTTP {status}, {got} rows, expected {expected}: {data[:200]!r}")
            rows += got
            size += len(data)
        out.append(CsvRun(key, title, rows, size, time.perf_counter() - t0, latencies))
    return out


@dataclass
class QueriesResult:
    dataset: Dataset
    load: LoadResult
    agreement: Agreement
    runs: list[QueryRun] = field(default_factory=list)  # at ``concurrency``
    alone: list[QueryRun] = field(default_factory=list)  # one request at a time
    csv: list[CsvRun] = field(default_factory=list)
    requests: int = 0
    concurrency: int = 0

    def run(self, key: str, raw: bool, alone: bool = False) -> QueryRun | None:
        return next((r for r in (self.alone if alone else self.runs) if r.key == key and r.raw == raw), None)
