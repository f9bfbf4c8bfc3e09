"""Load the 10 M-point query data set straight into PostgreSQL, stored exactly as the ingest path stores it.

Loading 10 M points through the HTTP API takes about an hour on the 2-core bench machine; the query
benchmark (tests/bench/big_queries.py) only needs the data *as stored*. So each chunk of points is
COPYed into the ingest worker's own temp stage (ingest_worker.writer.prepare_stage) and written by the
same ``telemetry.write_points_stage()`` the ingest transaction calls (migration 0013): points rows,
rollup_minute and rollup_hour merged additively, in one transaction per chunk. What the projection
worker adds after a commit is then done the projection's way: ``telemetry.refresh_metric_hours`` for
every (metric, hour) (migration 0014) and the newest point per series into latest_values (the rule of
projection_worker/projections/latest_values.py: newest time wins). The stats read model (device_stats)
is not filled: no benchmarked query reads it.
"""

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from ingest_worker.writer import prepare_stage
from telemetry_schemas.values import ValueType
from tests.bench.data import VALUE_MAX, VALUE_MIN
from tests.bench.queries import Dataset

_COPY = "COPY points_stage (device_id, metric_name, time, value_type, value_num, src_seq) FROM STDIN"
_WRITE = "SELECT count(*) FROM telemetry.write_points_stage()"
_PARTITIONS = "SELECT telemetry.ensure_partition(d) FROM unnest(%s::date[]) AS d"
_METRIC_HOURS = "SELECT telemetry.refresh_metric_hours(%s::text[], %s::timestamptz[])"
# The newest point of each series, as the latest-values projection keeps it (time, then stream order).
_LATEST = """
INSERT INTO telemetry.latest_values AS l
    (device_id, metric_name, time, value_type, value_num, value_text, value_bool, value_json, unit, tags, metadata,
     src_seq)
SELECT DISTINCT ON (device_id, metric_name) device_id, metric_name, time, value_type, value_num, value_text,
       value_bool, value_json, unit, tags, metadata::json, src_seq
FROM telemetry.points WHERE device_id = ANY(%s) AND metric_name = ANY(%s)
ORDER BY device_id, metric_name, time DESC, src_seq DESC
ON CONFLICT (device_id, metric_name) DO UPDATE SET
    time = EXCLUDED.time, value_type = EXCLUDED.value_type, value_num = EXCLUDED.value_num, src_seq = EXCLUDED.src_seq
"""
_COUNTS = {
    "points": "SELECT count(*) FROM telemetry.points WHERE metric_name = ANY(%s)",
    "rollup_minute": "SELECT coalesce(sum(count), 0) FROM telemetry.rollup_minute WHERE metric_name = ANY(%s)",
    "rollup_hour": "SELECT coalesce(sum(count), 0) FROM telemetry.rollup_hour WHERE metric_name = ANY(%s)",
    "rollup_metric_hour": "SELECT coalesce(sum(count), 0) FROM telemetry.rollup_metric_hour WHERE metric_name = ANY(%s)",
}
_TABLES = ("telemetry.points", "telemetry.rollup_minute", "telemetry.rollup_hour", "telemetry.rollup_metric_hour",
           "telemetry.latest_values")  # fmt: skip


@dataclass(frozen=True)
class BigLoad:
    """How long each step of the direct load took (seconds) and what it stored."""

    points: int
    write_s: float  # COPY + write_points_stage, all chunks
    metric_hours_s: float
    latest_s: float
    vacuum_s: float
    chunks: int
    chunk_points: int
    connections: int
    table_bytes: dict[str, int]

    @property
    def rate(self) -> float:
        return self.points / self.write_s


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def chunk_text(ds: Dataset, devices: range, seq: int) -> bytes:
    """COPY text of every point of ``devices``: all their metrics at every time step (one message per device)."""
    stamps = [_stamp(t) for t in ds.times()]
    kind = int(ValueType.FLOAT)
    lines: list[str] = []
    for d in devices:
        uniform = random.Random(9000 + d).uniform
        device = ds.device_ids[d]
        prefix = [f"{device}\t{m}\t" for m in ds.metric_names]
        tail = f"\t{kind}\t"
        end = f"\t{seq + d}\n"
        for stamp in stamps:
            lines.extend(f"{p}{stamp}{tail}{round(uniform(VALUE_MIN, VALUE_MAX), 4)}{end}" for p in prefix)
    return "".join(lines).encode()


async def _write_chunks(
    database_url: str, ds: Dataset, queue: "asyncio.Queue[range]", progress: Callable[[int], None]
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await prepare_stage(conn)
        while not queue.empty():
            devices = queue.get_nowait()
            body = chunk_text(ds, devices, 1)
            async with conn.transaction(), conn.cursor() as cur:
                async with cur.copy(_COPY) as copy:
                    await copy.write(body)
                await cur.execute(_WRITE)
            progress(len(devices) * ds.metrics * ds.per_series)


async def load_direct(
    database_url: str, ds: Dataset, *, chunk_devices: int, connections: int, say: Callable[[str], None]
) -> BigLoad:
    """Write the data set through write_points_stage, then the projections' tables; check every count."""
    days = sorted({(ds.start + timedelta(days=k)).date() for k in range(9)})
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(_PARTITIONS, (days,))
    queue: asyncio.Queue[range] = asyncio.Queue()
    chunks = [range(d, min(d + chunk_devices, ds.devices)) for d in range(0, ds.devices, chunk_devices)]
    for chunk in chunks:
        queue.put_nowait(chunk)
    done = 0
    t0 = time.perf_counter()

    def progress(points: int) -> None:
        nonlocal done
        done += points
        elapsed = time.perf_counter() - t0
        say(f"loaded {done:,} / {ds.points:,} points in {elapsed:.0f} s ({done / elapsed:,.0f} points/s)")

    await asyncio.gather(*(_write_chunks(database_url, ds, queue, progress) for _ in range(connections)))
    write_s = time.perf_counter() - t0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        hours = [ds.start + timedelta(hours=h) for h in range(int((ds.end - ds.start).total_seconds() // 3600))]
        pairs = [(m, h) for m in ds.metric_names for h in hours]
        t = time.perf_counter()
        await conn.execute(_METRIC_HOURS, ([m for m, _ in pairs], [h for _, h in pairs]))
        metric_hours_s = time.perf_counter() - t
        t = time.perf_counter()
        await conn.execute(_LATEST, (ds.device_ids, ds.metric_names))
        latest_s = time.perf_counter() - t
        # A settled database: autovacuum would get there; the queries then see it, not a half-vacuumed one.
        t = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) " + ", ".join(_TABLES))  # constants only
        vacuum_s = time.perf_counter() - t
        for name, statement in _COUNTS.items():
            got = (await (await conn.execute(statement, (ds.metric_names,))).fetchone() or (0,))[0]
            if got != ds.points:
                raise RuntimeError(f"{name} holds {got:,} points, {ds.points:,} loaded")
        cur = await conn.execute(
            "SELECT count(*) FROM telemetry.latest_values WHERE device_id = ANY(%s)", (ds.device_ids,)
        )
        latest = (await cur.fetchone() or (0,))[0]
        if latest != ds.devices * ds.metrics:
            raise RuntimeError(f"latest_values holds {latest} series, {ds.devices * ds.metrics} loaded")
        sizes = {}
        for table in _TABLES:
            cur = await conn.execute(
                "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s::regclass)), "
                "pg_total_relation_size(%s::regclass))",
                (table, table),
            )
            sizes[table] = int((await cur.fetchone() or (0,))[0])
    size = chunk_devices * ds.metrics * ds.per_series
    return BigLoad(ds.points, write_s, metric_hours_s, latest_s, vacuum_s, len(chunks), size, connections, sizes)
