"""The gateway's connection checkout at 50 concurrent queries: psycopg_pool, GatedPool and LeanPool.

`python -m tests.bench.pool_gate` (part of `make bench`; its own PostgreSQL, no NATS, no HTTP). 50 concurrent
callers in one process run the gateway's q2 (gateway/views/aggregates.py ``aggregate``: one series, 1 h buckets
over 24 h, answered from rollup_hour) through a 10-connection autocommit pool (TELEMETRY_DB_POOL_MAX's default),
as the gateway's request handlers do: psycopg_pool's AsyncConnectionPool as make_pool configured it before, GatedPool
(waiters on a semaphore) and LeanPool (also keeps connections between blocks: what make_pool now returns for the
gateway's autocommit pools), all three with make_pool's settings (shared/telemetry_core/gated_pool.py).
Rounds alternate; CPU is this process's user + system time per query (the gateway's share of a query: the
PostgreSQL backends are other processes), medians over rounds. Prints the table; ``--write`` puts it in
docs/benchmarks-pool.md.
"""

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from gateway.query_plan import Plan, Source
from gateway.views.aggregates import aggregate
from telemetry_core import event_loop, pg_pool
from telemetry_core.embedded import EmbeddedServer, start_postgres
from telemetry_core.gated_pool import GatedPool, LeanPool
from telemetry_core.migrate import migrate

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-pool.md"
SERIES, HOURS, CONCURRENCY, POOL_SIZE, QUERIES, ROUNDS = 100, 48, 50, 10, 4000, 5
T0 = datetime(2031, 1, 1, tzinfo=UTC)
_SEED = """
INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
SELECT 'dev_' || lpad((s / 10)::text, 5, '0'), 'metric_' || s %% 10, %(t0)s + h * interval '1 hour', 60, 60.0 * s, 0, s,
       '{"z": 60}'
FROM generate_series(0, %(hours)s - 1) h, generate_series(0, %(series)s - 1) s
"""


def pool_of(cls: type[AsyncConnectionPool], url: str) -> AsyncConnectionPool:
    """make_pool's gateway pool (autocommit, same settings) as an instance of ``cls``."""
    now = pg_pool.make_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE, autocommit=True)
    return cls(
        url, min_size=POOL_SIZE, max_size=POOL_SIZE, timeout=now.timeout, open=False,
        configure=now._configure, kwargs=now.kwargs,
    )  # fmt: skip


async def run_round(pool: AsyncConnectionPool) -> tuple[float, float, int]:
    """(queries/s, µs of this process's CPU per query, buckets returned) of QUERIES queries, CONCURRENCY at once."""
    plan = Plan(Source.HOUR, None)
    gate = asyncio.Semaphore(CONCURRENCY)  # the clients: at most CONCURRENCY requests in flight
    buckets = 0

    async def one(i: int) -> None:
        nonlocal buckets
        s = (i * 7919 + 42) % SERIES
        start = T0 + timedelta(hours=i % (HOURS - 24))
        async with gate:
            got = await aggregate(
                pool, plan, aggregation="avg", interval=3600, metrics=[f"metric_{s % 10}"],
                devices=[f"dev_{s // 10:05d}"], start=start, end=start + timedelta(hours=24),
            )  # fmt: skip
        buckets += len(got)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(QUERIES)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return QUERIES / wall, cpu / QUERIES * 1e6, buckets


async def measure(url: str) -> dict[str, list[tuple[float, float, int]]]:
    makers: dict[str, Callable[[str], AsyncConnectionPool]] = {
        "before: psycopg_pool's AsyncConnectionPool": lambda u: pool_of(AsyncConnectionPool, u),
        "GatedPool: callers beyond max_size wait on a semaphore": lambda u: pool_of(GatedPool, u),
        "now, LeanPool (make_pool's autocommit pool): + connections kept between blocks": lambda u: pool_of(
            LeanPool, u
        ),
    }
    pools = {name: make(url) for name, make in makers.items()}
    for pool in pools.values():
        await pool.open(wait=True)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in pools}
    try:
        for r in range(ROUNDS):
            order = list(pools) if r % 2 == 0 else list(reversed(pools))
            for name in order:
                results[name].append(await run_round(pools[name]))
    finally:
        for pool in pools.values():
            await pool.close()
    return results


def table(results: dict[str, list[tuple[float, float, int]]]) -> list[str]:
    base = statistics.median(cpu for _, cpu, _ in next(iter(results.values())))
    lines = ["| checkout | queries/s | CPU µs per query | vs before | buckets per round |", "|---|---|---|---|---|"]
    for name, rounds in results.items():
        rate = statistics.median(r for r, _, _ in rounds)
        cpu = statistics.median(c for _, c, _ in rounds)
        lines.append(f"| {name} | {rate:,.0f} | {cpu:.0f} | {cpu / base:.2f}x | {rounds[0][2]:,} |")
    return lines


@contextlib.contextmanager
def q2_postgres() -> Iterator[EmbeddedServer]:
    """A durable PostgreSQL of its own holding the q2 workload: SERIES series x HOURS hours of rollup_hour rows."""
    with tempfile.TemporaryDirectory(prefix="bench-q2-") as root:
        server = start_postgres(Path(root) / "pg", durable=True)
        try:
            migrate(server.url)
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(_SEED, {"t0": T0, "hours": HOURS, "series": SERIES})
                conn.execute("VACUUM ANALYZE telemetry.rollup_hour")
            yield server
        finally:
            server.stop()


def main() -> None:
    with q2_postgres() as server:
        load = os.getloadavg()[0]
        results = event_loop.run(measure(server.url))  # uvloop, as the gateway runs
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Connection checkout at 50 concurrent queries: psycopg_pool, GatedPool and LeanPool",
        "",
        f"Written by `python -m tests.bench.pool_gate` (part of `make bench`) on {stamp}, {os.cpu_count()} cores, "
        f"load average {load:.1f} before the run. {CONCURRENCY} concurrent callers, {QUERIES:,} queries a round, "
        f"{ROUNDS} rounds alternating, medians; q2 (one series, 1 h buckets over 24 h from rollup_hour, "
        f"gateway/views/aggregates.py) over {SERIES} series through a {POOL_SIZE}-connection autocommit pool. CPU is "
        "the calling process's (the gateway's share of a query). See the module's docstring for the method.",
        "",
        *table(results),
        "",
        "All return the same buckets. With more callers than connections, psycopg_pool queues each waiting caller "
        "on a condition awaited under asyncio.wait_for and hands it a returned connection; GatedPool keeps all but "
        "max_size callers on an asyncio.Semaphore in front of the pool; LeanPool also keeps a block's connection, "
        "when it comes back idle and healthy, for the next block instead of returning it to psycopg_pool (its "
        "lock, stats and reset check on every checkout and return).",
    ]
    print("\n".join(lines))
    if "--write" in sys.argv:
        DOC.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
