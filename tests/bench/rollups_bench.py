"""End-to-end ingest against the bare write path, with rollups fully applied (issue 13, item 3).

``python -m tests.bench.rollups_bench`` (part of `make bench`; prints its figures and writes
docs/benchmarks-rollups.md). In one run, on one durable PostgreSQL and NATS:

1. baseline: ``BENCH_ROLLUPS_BASELINE_POINTS`` points through the bare COPY + upsert path (no rollups,
   no notices), in 1000-point transactions (tests/bench/baseline.py).
2. sustained: ``BENCH_ROLLUPS_POINTS`` points over HTTP (1000-point batches, ``BENCH_ROLLUPS_DEVICES``
   devices, 8 clients), timed from the first send until (a) every point is counted in ``points``
   ("queryable", as in docs/benchmarks.md) and (b) every consumer is idle and ``rollup_minute`` counts
   every point ("rolled up": an aggregate query then sees every point).

3. maintenance cost (``BENCH_ROLLUPS_MICRO_POINTS``, default 60000, 0 skips): one connection writes the
   same shape of batches three ways, in rounds (bare / recompute / additive, three rounds, the least of
   each kept): bare COPY + upsert; that plus refresh_rollups of every touched minute (what the rollups
   projection did per notice before migration 0013); write_rows (additive merge in the transaction).
   CPU of that one PostgreSQL backend per point, read from /proc: the cleanest same-run comparison on
   a shared machine, with no HTTP, NATS or other process in it.
4. queries (issue 13 item 4; ``BENCH_ROLLUPS_QUERY_DEVICES``, default 1000, 0 skips): one metric on every
   device, one point per hour over the 7 days before the current hour, loaded over HTTP; then the 7-day
   hourly average across all devices (GET /aggregated without device_id), sequentially: p50 / p99 over
   HTTP, and the statement it runs now (rollup_metric_hour) against the one it ran before (rollup_hour
   with the generic device condition), both timed directly in PostgreSQL in the same run.

Reported: both rates and their ratios to the baseline, and PostgreSQL CPU microseconds per point in each
window (the postmaster and every backend). Run it on two checkouts to compare before / after: each run
carries its own baseline, so the ratios compare across runs on a busy machine, the absolute rates do not.
"""

import asyncio
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import msgspec
import psycopg

from ingest_worker.writer import PartitionCache, write_points_only, write_rows
from tests.bench.backlog import Backlog
from tests.bench.baseline import prepare_baseline, run_baseline
from tests.bench.client import Poster, make_client
from tests.bench.e2e import build_batches, post_batches, wait_queryable, warm_up
from tests.bench.procs import Monitor, Watched
from tests.bench.stats import percentile
from tests.support.servers import start_servers
from tests.support.stack import PROCESSES, Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-rollups.md"
_ROLLED = "SELECT coalesce(sum(count), 0) FROM telemetry.rollup_minute WHERE device_id = ANY(%s)"


# The 7-day average across all devices, as the gateway ran it before migration 0014 (generic device condition,
# every device's hour rows) and as it runs it now (one row per hour of the metric).
_BEFORE_SQL = (
    "SELECT date_bin(%(interval)s, bucket, %(start)s) AS b, NULL::text AS d, metric_name, "
    "sum(sum) / nullif(sum(count), 0), sum(count)::bigint FROM telemetry.rollup_hour "
    "WHERE metric_name = ANY(%(metrics)s) AND (%(devices)s::text[] IS NULL OR device_id = ANY(%(devices)s)) "
    "AND bucket >= %(start)s AND bucket < %(end)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
_AFTER_SQL = (
    "SELECT date_bin(%(interval)s, bucket, %(start)s) AS b, NULL::text AS d, metric_name, "
    "sum(sum) / nullif(sum(count), 0), sum(count)::bigint FROM telemetry.rollup_metric_hour "
    "WHERE metric_name = ANY(%(metrics)s) AND bucket >= %(start)s AND bucket < %(end)s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
_METRIC = "qmetric"


_REFRESH = "SELECT telemetry.refresh_rollups(%s::text[], %s::text[], %s::timestamptz[])"


def _backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def maintenance_cost(db: str, points: int, rounds: int = 3) -> list[str]:
    """PostgreSQL CPU per point of one backend: bare writes, + recompute of touched minutes, additive."""
    best: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(db) as conn:
        pid = conn.info.backend_pid
        for r in range(rounds):
            for mode in ("bare", "recompute", "additive"):
                batches = [
                    ([(f"micro-{mode}-{r}-{row[0]}", *row[1:]) for row in rows], days)
                    for rows, days in prepare_baseline(points, 1000, 50)
                ]
                await PartitionCache().ensure(conn, set().union(*(days for _, days in batches)))
                before = _backend_cpu_s(pid)
                for rows, _ in batches:
                    if mode == "additive":
                        await write_rows(conn, rows)
                        continue
                    await write_points_only(conn, rows)
                    if mode == "recompute":
                        minutes = {
                            (row[0], row[1], row[2].astimezone(UTC).replace(second=0, microsecond=0)) for row in rows
                        }
                        devices, metrics, buckets = zip(*sorted(minutes), strict=True)
                        async with conn.transaction():
                            await conn.execute(_REFRESH, (list(devices), list(metrics), list(buckets)))
                used = (_backend_cpu_s(pid) - before) / points * 1e6
                best[mode] = min(best.get(mode, used), used)
    bare = best["bare"]
    return [
        f"rollup maintenance, one backend, {points:,} points x {rounds} rounds (least CPU/point of the rounds): "
        f"bare {bare:.2f} us; + recompute of touched minutes {best['recompute']:.2f} us "
        f"(rollups {best['recompute'] - bare:.2f} us); additive {best['additive']:.2f} us "
        f"(rollups {best['additive'] - bare:.2f} us)",
    ]


def _ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50) * 1000:.2f} ms, p99 {percentile(values, 99) * 1000:.2f} ms"


async def queries(client: Poster, db: str, backlog: Backlog, devices: int, requests: int) -> list[str]:
    """Load one week of hourly points per device, then time the 7-day average across all devices."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=7)
    hours = [start + timedelta(hours=h, minutes=30) for h in range(7 * 24)]
    rng = random.Random(13)
    batches = [
        (f"qdev-{d:04d}", msgspec.json.encode({"data_points": [
            {"timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "metric_name": _METRIC, "value": round(rng.uniform(0, 100), 3)}
            for t in hours
        ]}))
        for d in range(devices)
    ]  # fmt: skip
    t0 = time.perf_counter()
    acked = await post_batches(client, batches, 8)
    await _rolled_up(db, [d for d, _ in batches], acked, 900)
    await backlog.wait_idle(900)
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT sum(count) FROM telemetry.rollup_metric_hour WHERE metric_name = %s", (_METRIC,))
        ).fetchone()
        assert row is not None and int(row[0]) >= acked, f"rollup_metric_hour holds {row}, want {acked}"
    lines = [f"query data set: {devices} devices x 1 metric x 168 hourly points = {acked:,} points, loaded and "
             f"rolled up in {time.perf_counter() - t0:.1f} s"]  # fmt: skip
    params = {"metric_name": _METRIC, "aggregation_type": "avg", "interval": 3600,
              "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    path = f"/api/v1/telemetry/aggregated?{urlencode(params)}"
    http: list[float] = []
    for i in range(requests + 20):
        t = time.perf_counter()
        status, body = await client.get(path)
        if status != 200:
            raise RuntimeError(f"GET {status}: {body[:200]!r}")
        if i >= 20:
            http.append(time.perf_counter() - t)
    answer = msgspec.json.decode(body)
    assert answer["source"] == "rollup_hour" and answer["count"] == 168, answer["count"]
    sql_params = {"interval": timedelta(hours=1), "start": start, "end": end, "metrics": [_METRIC], "devices": None}
    timed: dict[str, list[float]] = {"before": [], "after": []}
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        for i in range(requests + 10):
            for name, statement in (("before", _BEFORE_SQL), ("after", _AFTER_SQL)):
                t = time.perf_counter()
                rows = await (await conn.execute(statement, sql_params)).fetchall()
                if i >= 10:
                    timed[name].append(time.perf_counter() - t)
                assert len(rows) == 168
    before, after = timed["before"], timed["after"]
    lines += [
        f"7-day hourly avg across all {devices} devices, GET /aggregated (sequential, {requests} requests): {_ms(http)}",
        f"  its statement in PostgreSQL now (rollup_metric_hour, 168 rows): {_ms(after)}",
        f"  the statement before (rollup_hour, generic device condition, {devices * 168:,} rows): {_ms(before)} "
        f"(p50 {percentile(before, 50) / percentile(after, 50):.0f}x the new one)",
    ]
    return lines


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def say(message: str) -> None:
    print(f"[rollups-bench] {message}", flush=True)


async def _rolled_up(database_url: str, devices: list[str], want: int, timeout_s: float) -> None:
    """Wait until rollup_minute counts ``want`` points of ``devices`` (the bench's points are all numeric)."""
    deadline = time.perf_counter() + timeout_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(_ROLLED, (devices,))).fetchone()
            if row and int(row[0]) >= want:
                return
            if time.perf_counter() > deadline:
                raise TimeoutError(f"rollups hold {row[0] if row else 0} of {want} points after {timeout_s}s")
            await asyncio.sleep(0.05)


async def bench(stack: Stack, monitor: Monitor) -> list[str]:
    total, base_points = _env_int("BENCH_ROLLUPS_POINTS", 200_000), _env_int("BENCH_ROLLUPS_BASELINE_POINTS", 200_000)
    devices = _env_int("BENCH_ROLLUPS_DEVICES", 50)
    db = stack.servers.database_url
    client = make_client("raw", stack.url, stack.headers, 8)
    backlog = await Backlog.connect(stack.servers.nats_url)
    lines: list[str] = []
    try:
        prepared = prepare_baseline(base_points, 1000, devices)
        before = monitor.snapshot()
        base = await run_baseline(db, prepared)
        base_cpu = monitor.phase("baseline", before, monitor.snapshot()).cpu_s.get("postgres", 0.0)
        say(f"baseline {base.rate:,.0f} points/s, PostgreSQL {base_cpu / base.points * 1e6:.2f} us/point")
        await warm_up(client, db, backlog, 16, 8)

        batches = build_batches("rollbench", total, 1000, devices)
        names = sorted({d for d, _ in batches})
        before = monitor.snapshot()
        t0 = time.perf_counter()
        acked = await post_batches(client, batches, 8)
        acked_s = time.perf_counter() - t0
        queryable_s = await wait_queryable(db, backlog, names, acked, 600) - t0
        at_queryable = monitor.snapshot()
        await _rolled_up(db, names, acked, 600)
        await backlog.wait_idle(600)
        rolled_s = time.perf_counter() - t0
        after = monitor.snapshot()
        pg_q = monitor.phase("queryable", before, at_queryable).cpu_s.get("postgres", 0.0)
        pg_all = monitor.phase("rolled", before, after).cpu_s.get("postgres", 0.0)
        q_rate, r_rate = acked / queryable_s, acked / rolled_s
        lines = [
            f"baseline (bare COPY + upsert): {base.points:,} points, {base.rate:,.0f} points/s, "
            f"PostgreSQL {base_cpu / base.points * 1e6:.2f} us CPU/point",
            f"sustained: {acked:,} points acked in {acked_s:.1f} s ({acked / acked_s:,.0f} points/s)",
            f"queryable (points counted): {q_rate:,.0f} points/s = {q_rate / base.rate:.3f}x baseline; "
            f"PostgreSQL {pg_q / acked * 1e6:.2f} us CPU/point up to then",
            f"rolled up (rollup_minute counts every point, every consumer idle): {r_rate:,.0f} points/s = "
            f"{r_rate / base.rate:.3f}x baseline; PostgreSQL {pg_all / acked * 1e6:.2f} us CPU/point in all",
        ]
        micro = _env_int("BENCH_ROLLUPS_MICRO_POINTS", 60_000)
        if micro:
            lines += await maintenance_cost(db, micro)
        query_devices = _env_int("BENCH_ROLLUPS_QUERY_DEVICES", 1000)
        if query_devices:
            lines += await queries(client, db, backlog, query_devices, _env_int("BENCH_ROLLUPS_QUERY_REQUESTS", 200))
        for line in lines:
            say(line)
    finally:
        await backlog.close()
        await client.aclose()
    return lines


def _write(lines: list[str]) -> None:
    body = "\n".join(f"- {line}" for line in lines)
    DOC.write_text(
        "# Rollups benchmark\n\nWritten by `python -m tests.bench.rollups_bench` (part of `make bench`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores. Ratios are against the bare write "
        "path measured in the same run (issue 13 item 3).\n\n"
        f"{body}\n"
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="telemetry-rollups-bench-"))
    servers = start_servers(root / "servers", durable=True)
    stack = Stack(servers, root / "logs", suite_settings=False)
    monitor: Monitor | None = None
    try:
        stack.start_all()
        postgres = servers.postgres.proc.pid  # type: ignore[attr-defined]  # embedded backend
        monitor = Monitor(
            [*(Watched(n, stack.procs[n].pid) for n in PROCESSES), Watched("postgres", postgres, tree=True)]
        )
        monitor.start()
        _write(asyncio.run(bench(stack, monitor)))
        say(f"wrote {DOC}")
    finally:
        if monitor is not None:
            monitor.stop()
        stack.stop_all()
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
