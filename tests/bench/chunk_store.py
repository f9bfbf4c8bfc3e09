"""Per-series chunks against row-per-point storage, in one run (issue 13 item 3; design: docs/storage-chunks.md).

``python -m tests.bench.chunk_store`` (``make bench-chunks``; not part of ``make bench``). Starts its own durable
PostgreSQL (as the other benches do), migrates it, and creates the prototype's throwaway schema ``chunkbench``
(tests/bench/chunk_schema.py). On one connection, so PostgreSQL CPU per point is read from that one backend:

a. write: ``BENCH_CHUNKS_DEVICES`` (1,000) devices x 10 metrics x 100 timestamps per mode, 1000-point batches of
   one device, in 4 rounds alternating ABCD / DCBA: rows bare (COPY + upsert: the baseline), chunks bare,
   rows + rollups (the ingest worker's write_rows), chunks + rollups (aggregates computed in Python before COPY,
   merged additively; overlap check). The chunk modes' clock includes building the chunks in Python.
b. overwrite: ``BENCH_CHUNKS_OVERWRITES`` (100) devices written again, same timestamps, new values, later
   sequence, alternating rows / chunks; then the chunk rollups are checked against a recompute from the
   later-wins-resolved chunks (every minute and hour: count, min, max, sketch equal, sum within 1e-9).
c. reads: 4 devices x 5 metrics x 7 d at one point per minute written both ways (same values); each query
   alternately on both, p50 / p99, answers compared.
d. storage: bytes per point (pg_total_relation_size of fresh copies), rows against chunks without and with
   forced TOAST compression (pglz, and lz4 when the server has it).

Every figure carries the 1-minute load average; ratios are within this run. Writes docs/benchmarks-chunks.md.
"""

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from psycopg import AsyncConnection, sql

from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_points_only, write_rows
from telemetry_core.embedded import start_postgres
from telemetry_core.migrate import migrate
from telemetry_schemas.values import Point
from tests.bench.chunk_build import Row, build_chunks
from tests.bench.chunk_schema import (
    AGG_STAGE_COLUMNS,
    AGG_STAGE_TYPES,
    CHUNK_FAST_READS,
    CHUNK_READS,
    CHUNK_STAGE_COLUMNS,
    CHUNK_STAGE_TYPES,
    DDL,
    ENSURE_PARTITION,
    ROW_READS,
    SCHEMA,
    STAGES,
)
from tests.bench.stats import percentile

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-chunks.md"
METRICS = 10
TIMESTAMPS = 100
ROUNDS = 4
SQL_AGGS = "chunks + rollups, aggregates in SQL"
MODES = ("rows bare", "chunks bare", "rows + rollups", "chunks + rollups", SQL_AGGS)
_PREFIX = {"rows bare": "A", "chunks bare": "B", "rows + rollups": "C", "chunks + rollups": "D", SQL_AGGS: "E"}
_COPY_CHUNKS = f"COPY chunk_stage ({CHUNK_STAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_AGGS = f"COPY agg_stage ({AGG_STAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_WRITE = f"SELECT {SCHEMA}.write_chunks(%s, %s)"


def say(message: str) -> None:
    print(f"[chunk-store] {message}", flush=True)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(device: str, metric: str, t: datetime, v: float, seq: int) -> Row:
    return (device, metric, t, 0, v, None, None, None, None, None, None, seq)


def device_batch(device: str, start: datetime, seq: int, rng: random.Random) -> list[Row]:
    """One device's 1000-point batch: 100 timestamps, 1 s apart, x 10 metrics."""
    return [
        _row(device, f"metric-{m}", start + timedelta(seconds=i), round(rng.uniform(-50, 150), 4), seq)
        for i in range(TIMESTAMPS)
        for m in range(METRICS)
    ]


async def write_chunk_batch(conn: AsyncConnection, rows: list[Row], with_rollups: bool, in_sql: bool = False) -> int:
    """Build the batch's chunks (and rollup rows unless ``in_sql``), COPY them to the stages, write.

    Returns how many of the batch's chunks met stored points (their minutes were recomputed).
    """
    chunks, aggs = build_chunks(rows, with_rollups and not in_sql)
    async with conn.transaction(), conn.cursor() as cur:
        async with cur.copy(_COPY_CHUNKS) as copy:
            copy.set_types(CHUNK_STAGE_TYPES)
            for c in chunks:
                await copy.write_row(c)
        if aggs:
            async with cur.copy(_COPY_AGGS) as copy:
                copy.set_types(AGG_STAGE_TYPES)
                for a in aggs:
                    await copy.write_row(a)
        await cur.execute(_WRITE, (with_rollups, in_sql), prepare=True)
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def _writer(conn: AsyncConnection, mode: str) -> Callable[[list[Row]], Awaitable[Any]]:
    if mode == "rows bare":
        return lambda rows: write_points_only(conn, rows)
    if mode == "rows + rollups":
        return lambda rows: write_rows(conn, rows)
    return lambda rows: write_chunk_batch(conn, rows, mode != "chunks bare", mode == SQL_AGGS)


async def setup(conn: AsyncConnection, days: list[date]) -> bool:
    """The prototype's schema, its day partitions, the session stages; True when the server has lz4."""
    await conn.execute(DDL)
    for day in days:
        part = sql.Identifier(f"points_chunk_p{day:%Y%m%d}")
        lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
        await conn.execute(
            sql.SQL(ENSURE_PARTITION).format(
                schema=sql.Identifier(SCHEMA), part=part, lo=sql.Literal(lo), hi=sql.Literal(lo + timedelta(days=1))
            )
        )
    for stage in STAGES:
        await conn.execute(stage)
    await PartitionCache().ensure(conn, set(days))
    try:
        await conn.execute("SET default_toast_compression = 'lz4'")
        await conn.execute("RESET default_toast_compression")
        return True
    except psycopg.errors.InvalidParameterValue:
        return False


class Tally:
    def __init__(self) -> None:
        self.points: dict[str, int] = dict.fromkeys(MODES, 0)
        self.seconds: dict[str, float] = dict.fromkeys(MODES, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(MODES, 0.0)
        self.client: dict[str, float] = dict.fromkeys(MODES, 0.0)  # this process: the worker's side
        self.loads: list[float] = []

    def rate(self, mode: str) -> float:
        return self.points[mode] / self.seconds[mode]

    def cpu_us(self, mode: str) -> float:
        return self.cpu[mode] / self.points[mode] * 1e6

    def client_us(self, mode: str) -> float:
        return self.client[mode] / self.points[mode] * 1e6


async def write_phase(conn: AsyncConnection, devices: int, start: datetime, seq: list[int]) -> Tally:
    """(a): every mode writes its own devices, in rounds alternating ABCD / DCBA."""
    tally = Tally()
    pid = conn.info.backend_pid
    per_round = -(-devices // ROUNDS)
    for r in range(ROUNDS):
        order = MODES if r % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            rng = random.Random(f"{mode}-{r}")
            batches = []
            for d in range(r * per_round, min(devices, (r + 1) * per_round)):
                seq[0] += 1
                batches.append(device_batch(f"{_PREFIX[mode]}-{d:04d}", start, seq[0], rng))
            write = _writer(conn, mode)
            tally.loads.append(os.getloadavg()[0])
            cpu0, t0, own0 = _backend_cpu_s(pid), time.perf_counter(), time.process_time()
            for rows in batches:
                await write(rows)
            tally.seconds[mode] += time.perf_counter() - t0
            tally.cpu[mode] += _backend_cpu_s(pid) - cpu0
            tally.client[mode] += time.process_time() - own0
            tally.points[mode] += sum(len(b) for b in batches)
        say(f"write round {r + 1}/{ROUNDS} done, {load()}")
    return tally


async def overwrite_phase(conn: AsyncConnection, devices: int, start: datetime, seq: list[int]) -> list[str]:
    """(b): same timestamps again, later sequence, new values; rows (write_rows) vs chunks (+ rollups)."""
    pid = conn.info.backend_pid
    times: dict[str, list[float]] = {"rows": [], "chunks": []}
    cpu: dict[str, float] = {"rows": 0.0, "chunks": 0.0}
    overlapping = 0
    load0 = os.getloadavg()[0]
    rng = random.Random("overwrite")
    for d in range(devices):
        for side in ("rows", "chunks") if d % 2 == 0 else ("chunks", "rows"):
            seq[0] += 1
            rows = device_batch(f"{'C' if side == 'rows' else 'D'}-{d:04d}", start, seq[0], rng)
            cpu0, t0 = _backend_cpu_s(pid), time.perf_counter()
            if side == "rows":
                await write_rows(conn, rows)
            else:
                overlapping += await write_chunk_batch(conn, rows, True)
            times[side].append(time.perf_counter() - t0)
            cpu[side] += _backend_cpu_s(pid) - cpu0
    assert overlapping == devices * METRICS, f"overlap check found {overlapping} chunks, want {devices * METRICS}"
    n = devices * METRICS * TIMESTAMPS
    r50, c50 = percentile(times["rows"], 50), percentile(times["chunks"], 50)
    return [
        f"(b) overwrite: {devices} batches of 1000 points each way, every point an existing (device, metric, time) "
        f"with a later sequence (load {load0:.1f} → {os.getloadavg()[0]:.1f}): per batch p50 rows {r50 * 1e3:.1f} ms, "
        f"chunks {c50 * 1e3:.1f} ms (chunks {r50 / c50:.2f}x as fast); PostgreSQL CPU/point rows "
        f"{cpu['rows'] / n * 1e6:.1f} us, chunks {cpu['chunks'] / n * 1e6:.1f} us; the overlap check flagged "
        f"{overlapping} of {overlapping} chunks (every series-hour recomputed from the later-wins-resolved chunks)",
    ]


def _check_sql(table: str, width: str) -> str:
    return f"""
WITH resolved AS (
    SELECT DISTINCT ON (c.device_id, c.metric_name, u.t) c.device_id AS d, c.metric_name AS m, u.t, u.v
    FROM {SCHEMA}.points_chunk c, unnest(c.ts, c.vals, coalesce(c.seqs, array_fill(c.src_seq, ARRAY[c.n]))) AS u(t, v, s)
    WHERE c.device_id LIKE 'D-%%' OR c.device_id LIKE 'E-%%' ORDER BY c.device_id, c.metric_name, u.t, u.s DESC
), truth AS (
    SELECT d, m, date_bin('{width}', t, timestamptz 'epoch') AS b, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi
    FROM resolved GROUP BY 1, 2, 3
), keys AS (
    SELECT d, m, b, jsonb_object_agg(k, n) AS sketch FROM (
        SELECT d, m, date_bin('{width}', t, timestamptz 'epoch') AS b, telemetry.dd_key(v) AS k, count(*) AS n
        FROM resolved GROUP BY 1, 2, 3, 4) x GROUP BY 1, 2, 3
)
SELECT count(*) FILTER (WHERE r.device_id IS NULL OR t.d IS NULL OR r.count <> t.n OR r.min <> t.lo
                          OR r.max <> t.hi OR abs(r.sum - t.s) > 1e-9 * greatest(1, abs(t.s)) OR r.sketch <> k.sketch),
       count(*)
FROM truth t JOIN keys k USING (d, m, b)
FULL JOIN (SELECT * FROM {SCHEMA}.{table} WHERE device_id LIKE 'D-%%' OR device_id LIKE 'E-%%') r
  ON r.device_id = t.d AND r.metric_name = t.m AND r.bucket = t.b
"""


async def check_rollups(conn: AsyncConnection) -> str:
    """The chunk rollups against a recompute from the resolved chunks (after fresh writes and overwrites)."""
    out = []
    for table, width in (("rollup_minute", "1 minute"), ("rollup_hour", "1 hour")):
        row = await (await conn.execute(_check_sql(table, width))).fetchone()
        assert row is not None
        bad, total = int(row[0]), int(row[1])
        assert bad == 0, f"{table}: {bad} of {total} buckets differ from the resolved chunks"
        out.append(f"{table} {total:,} buckets")
    return "exactness: chunk rollups equal a recompute from the later-wins-resolved chunks (" + ", ".join(out) + ")"


def read_set(end: datetime, devices: int = 4, metrics: int = 5) -> list[list[Row]]:
    """7 d at one point per minute per series; 1000-point batches of one device (200 minutes x 5 metrics)."""
    start = end - timedelta(days=7)
    rng = random.Random("reads")
    batches: list[list[Row]] = []
    minutes = 7 * 24 * 60
    per_batch = 1000 // metrics
    seq = 10_000_000
    for d in range(devices):
        for first in range(0, minutes, per_batch):
            seq += 1
            batches.append([
                _row(f"R-{d:02d}", f"metric-{m}", start + timedelta(minutes=k), round(rng.uniform(-50, 150), 4), seq)
                for k in range(first, min(minutes, first + per_batch)) for m in range(metrics)
            ])  # fmt: skip
    return batches


def _same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        for p, q in zip(x, y, strict=True):
            if isinstance(p, float) and isinstance(q, float):
                if abs(p - q) > 1e-9 * max(1.0, abs(p)):
                    return False
            elif p != q:
                return False
    return True


async def read_phase(conn: AsyncConnection, end: datetime, requests: int) -> list[str]:
    """(c): each read on the row table and on the chunks, alternately, p50 / p99; answers must agree."""
    batches = read_set(end)
    for rows in batches:
        await write_rows(conn, rows)
        await write_chunk_batch(conn, rows, True)
    await conn.execute("ANALYZE telemetry.points")
    await conn.execute(f"ANALYZE {SCHEMA}.points_chunk")
    await conn.execute(f"ANALYZE {SCHEMA}.rollup_hour")
    rng = random.Random("queries")
    timed: dict[str, dict[str, list[float]]] = {q: {"rows": [], "chunks": [], "fast": []} for q in ROW_READS}
    loads = []
    for i in range(requests + 20):
        params = {
            "device": f"R-{rng.randrange(4):02d}",
            "metric": f"metric-{rng.randrange(5)}",
            "start": end - timedelta(days=1),
            "end": end,
            "week": end - timedelta(days=7),
        }
        if i % 50 == 0:
            loads.append(os.getloadavg()[0])
        for name in ROW_READS:
            sides = [("rows", ROW_READS[name]), ("chunks", CHUNK_READS[name])]
            if name in CHUNK_FAST_READS:
                sides.append(("fast", CHUNK_FAST_READS[name]))
            if i % 2:
                sides.reverse()
            answers = {}
            for side, statement in sides:
                t0 = time.perf_counter()
                answers[side] = await (await conn.execute(statement, params, prepare=True)).fetchall()
                if i >= 20:
                    timed[name][side].append(time.perf_counter() - t0)
            for side, answer in answers.items():
                assert answer and _same(answers["rows"], answer), f"{name}: {side} answered differently"
    lines = [
        f"(c) reads: 4 devices x 5 metrics x 10,080 points (7 d, one a minute) written both ways, chunks of <= 60 "
        f"points (one series-hour per batch); {requests} requests per query, alternating, answers compared "
        f"(load {min(loads):.1f}-{max(loads):.1f}):"
    ]
    for name, by in timed.items():
        r50, c50 = percentile(by["rows"], 50), percentile(by["chunks"], 50)
        line = (
            f"  {name}: p50 rows {r50 * 1e3:.3f} ms, chunks {c50 * 1e3:.3f} ms ({c50 / r50:.2f}x the row time); "
            f"p99 rows {percentile(by['rows'], 99) * 1e3:.3f} ms, chunks {percentile(by['chunks'], 99) * 1e3:.3f} ms"
        )
        if by["fast"]:
            f50 = percentile(by["fast"], 50)
            line += f"; chunks without later-wins resolution (no overlaps) p50 {f50 * 1e3:.3f} ms ({f50 / r50:.2f}x)"
        lines.append(line)
    return lines


async def _size(conn: AsyncConnection, table: str) -> int:
    row = await (await conn.execute(f"SELECT pg_total_relation_size('{table}')")).fetchone()
    return int(row[0]) if row else 0


async def storage_phase(conn: AsyncConnection, lz4: bool) -> list[str]:
    """(d): fresh copies (no dead tuples), each with its indexes; bytes per point."""
    lines = [f"(d) storage, bytes per point incl. indexes and TOAST (fresh copies; {load()}):"]
    for label, prefix in (
        ("write workload (100-point chunks, 1 s apart)", "A"),
        ("read set (<= 60-point chunks, 1 min apart)", "R"),
    ):
        chunk_prefix = "B" if prefix == "A" else "R"
        rows_t = f"{SCHEMA}.store_rows_{prefix.lower()}"
        await conn.execute(f"CREATE TABLE {rows_t} (LIKE telemetry.points INCLUDING ALL)")
        await conn.execute(
            f"INSERT INTO {rows_t} SELECT * FROM telemetry.points WHERE device_id LIKE '{prefix}-%' "
            "ORDER BY device_id, metric_name, time"
        )
        points = (await (await conn.execute(f"SELECT count(*) FROM {rows_t}")).fetchone() or [0])[0]
        await conn.execute(f"VACUUM ANALYZE {rows_t}")
        row_bytes = await _size(conn, rows_t)
        parts = [f"rows {row_bytes / points:.1f}"]
        variants = [("plain", None), ("pglz", "pglz")] + ([("lz4", "lz4")] if lz4 else [])
        for name, method in variants:
            t = f"{SCHEMA}.store_chunks_{prefix.lower()}_{name}"
            opts = " WITH (toast_tuple_target = 128)" if method else ""
            await conn.execute(f"CREATE TABLE {t} (LIKE {SCHEMA}.points_chunk INCLUDING ALL){opts}")
            if method:
                for col in ("ts", "seqs", "vals"):
                    await conn.execute(f"ALTER TABLE {t} ALTER COLUMN {col} SET COMPRESSION {method}")
            await conn.execute(
                f"INSERT INTO {t} SELECT * FROM {SCHEMA}.points_chunk WHERE device_id LIKE '{chunk_prefix}-%' "
                "ORDER BY device_id, metric_name, t_min"
            )
            await conn.execute(f"VACUUM ANALYZE {t}")
            counted = await (await conn.execute(
                f"SELECT sum(n), count(*) FILTER (WHERE pg_column_compression(ts) IS NOT NULL "
                f"OR pg_column_compression(vals) IS NOT NULL), count(*) FROM {t}"
            )).fetchone()  # fmt: skip
            assert counted is not None
            n, packed, chunks = (int(x) for x in counted)
            size = await _size(conn, t)
            parts.append(
                f"chunks {name} {size / n:.1f} ({size / n / (row_bytes / points):.2f}x; "
                f"{packed / chunks:.0%} of chunks stored compressed)"
            )
        lines.append(f"  {label}, {points:,} points: " + "; ".join(parts))
    lines.append(await compacted_storage(conn))
    return lines


# One compacted series-hour at 1 Hz: 3,600 points, ~57 kB, above the 2 kB TOAST threshold, so PostgreSQL
# compresses it (pglz here) unless the column is STORAGE EXTERNAL. Values random as in the workload, or
# sensor-like (a slow wave at 0.1 resolution, the kind of series a real device sends).
_COMPACTED = """
INSERT INTO {t} (device_id, metric_name, t_min, t_max, src_seq, n, ts, seqs, vals)
SELECT 'S-' || s, 'metric-0', h, h + interval '3599 s', 1, 3600,
       ARRAY(SELECT h + i * interval '1 s' FROM generate_series(0, 3599) i), NULL,
       ARRAY(SELECT {value} FROM generate_series(0, 3599) i)
FROM generate_series(1, 20) s, (SELECT date_bin('1 hour', now() - interval '2 hours', timestamptz 'epoch') AS h) x
"""
_VALUES = {
    "random values": "round((random() * 200 - 50)::numeric, 4)::float8 + 0 * s",
    "sensor-like values": "round((20 + 5 * sin((i + s * 97) / 600.0))::numeric, 1)::float8",
}


async def compacted_storage(conn: AsyncConnection) -> str:
    """Bytes per point of compacted hour chunks (1 Hz): TOAST compression on (default) and off (EXTERNAL)."""
    parts = []
    for k, (label, value) in enumerate(_VALUES.items()):
        for mode in ("compressed", "uncompressed"):
            t = f"{SCHEMA}.store_compacted_{k}_{mode}"
            await conn.execute(f"CREATE TABLE {t} (LIKE {SCHEMA}.points_chunk INCLUDING ALL)")
            if mode == "uncompressed":
                for col in ("ts", "vals"):
                    await conn.execute(f"ALTER TABLE {t} ALTER COLUMN {col} SET STORAGE EXTERNAL")
            await conn.execute(_COMPACTED.format(t=t, value=value))
            await conn.execute(f"VACUUM ANALYZE {t}")
            parts.append(f"{label} {mode} {await _size(conn, t) / (20 * 3600):.1f}")
    return (
        "  compacted series-hours at 1 Hz (3,600-point chunks, 20 series, TOAST pglz as the server compresses "
        "values over 2 kB; rows would be ~142): " + "; ".join(parts)
    )


_points_decoder = msgspec.json.Decoder(list[Point])


def worker_side(batches: int = 200) -> str:
    """Python per point in the worker: today's RowSet vs building chunks + rollup rows from the same Points."""
    rng = random.Random("worker")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    decoded: list[list[Point]] = []
    for _ in range(batches):
        raw = [
            {"timestamp": (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "metric_name": f"metric-{m}",
             "value": round(rng.uniform(-50, 150), 4)}
            for i in range(TIMESTAMPS) for m in range(METRICS)
        ]  # fmt: skip
        decoded.append(_points_decoder.decode(msgspec.json.encode(raw)))
    t0 = time.process_time()
    for b, pts in enumerate(decoded):
        rs = RowSet()
        for p in pts:
            rs.add("w-dev", p, b)
        rs.rows()
    rowset_s = time.process_time() - t0
    t0 = time.process_time()
    for b, pts in enumerate(decoded):
        rows = [_row("w-dev", p.metric_name, p.timestamp, float(p.value), b) for p in pts]  # type: ignore[arg-type]  # numeric
        build_chunks(rows, True)
    chunk_s = time.process_time() - t0
    n = batches * METRICS * TIMESTAMPS
    return (
        f"worker-side Python per point ({load()}): today's RowSet (point_row + de-dup) {rowset_s / n * 1e6:.2f} us; "
        f"chunks + minute/hour rollup rows with sketch keys from the same Points {chunk_s / n * 1e6:.2f} us"
    )


async def bench(url: str) -> list[str]:
    devices = _env_int("BENCH_CHUNKS_DEVICES", 1000)
    overwrites = min(devices, _env_int("BENCH_CHUNKS_OVERWRITES", 100))
    requests = _env_int("BENCH_CHUNKS_READS", 300)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = hour - timedelta(hours=1)
    read_end = hour - timedelta(hours=2)
    today = hour.date()
    days = [today + timedelta(days=k) for k in range(-9, 2)]
    seq = [0]
    lines: list[str] = []
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        lz4 = await setup(conn, days)
        say(f"schema ready (lz4 {'available' if lz4 else 'not available'}), {load()}")
        tally = await write_phase(conn, devices, start, seq)
        base = tally.rate("rows bare")
        lines.append(
            f"(a) write, {devices:,} devices x {METRICS} metrics x {TIMESTAMPS} timestamps per mode, 1000-point "
            f"batches of one device, {ROUNDS} rounds ABCD/DCBA (load {min(tally.loads):.1f}-{max(tally.loads):.1f}):"
        )
        for mode in MODES:
            lines.append(
                f"  {mode}: {tally.rate(mode):,.0f} points/s = {tally.rate(mode) / base:.2f}x rows bare; "
                f"PostgreSQL {tally.cpu_us(mode):.2f} us CPU/point = {tally.cpu_us(mode) / tally.cpu_us('rows bare'):.2f}x; "
                f"writer process (chunk building, COPY encoding) {tally.client_us(mode):.2f} us CPU/point"
            )
        c = "rows + rollups"
        for d in ("chunks + rollups", SQL_AGGS):
            lines.append(f"  {d} / rows + rollups: {tally.rate(d) / tally.rate(c):.2f}x the rate, "
                         f"{tally.cpu_us(d) / tally.cpu_us(c):.2f}x the PostgreSQL CPU per point")  # fmt: skip
        say(lines[-1])
        lines += await overwrite_phase(conn, overwrites, start, seq)
        say(lines[-1])
        lines.append(await check_rollups(conn))
        say(lines[-1])
        lines.append(worker_side())
        say(lines[-1])
        lines += await read_phase(conn, read_end, requests)
        say("reads done")
        lines += await storage_phase(conn, lz4)
    return lines


def _write(lines: list[str]) -> None:
    body = "\n".join(f"- {line}" if not line.startswith("  ") else f"  - {line.strip()}" for line in lines)
    DOC.write_text(
        "# Per-series chunks against row-per-point storage\n\n"
        f"Written by `python -m tests.bench.chunk_store` (`make bench-chunks`) on {datetime.now(UTC):%Y-%m-%d %H:%M} "
        f"UTC, {os.cpu_count()} cores, durable PostgreSQL, one connection. A prototype in a throwaway schema: the "
        "design and what these figures mean are in docs/storage-chunks.md. Ratios are within this run; the "
        "machine is shared, so every figure carries the 1-minute load average.\n\n"
        f"{body}\n"
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="telemetry-chunk-bench-"))
    postgres = start_postgres(root / "postgres", durable=True)
    try:
        migrate(postgres.url)
        lines = asyncio.run(bench(postgres.url))
        for line in lines:
            say(line)
        _write(lines)
        say(f"wrote {DOC}")
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
