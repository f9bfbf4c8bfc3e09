"""One-series aggregates at 50 concurrent requests: each in its own statement, or batched (series_batches.py).

`python -m tests.bench.series_batches` (part of `make bench`; its own PostgreSQL, no NATS, no HTTP). The same
q2 workload as tests/bench/pool_gate.py (gateway/views/aggregates.py ``aggregate``: one series, 1 h buckets over
24 h from rollup_hour, 50 concurrent callers, a 10-connection LeanPool as make_pool builds the gateway's), through
one pool whose reads run one statement each and one that batches them (TELEMETRY_QUERY_BATCH's default), rounds
alternating. CPU per query of this process (the gateway's share) and of PostgreSQL (every backend of the server),
medians over rounds. Prints the table; ``--write`` puts it in docs/benchmarks-series-batches.md.
"""

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from psycopg_pool import AsyncConnectionPool

from gateway.views.series_batches import batch_series_reads, batches_of
from telemetry_core import event_loop
from telemetry_core.gated_pool import LeanPool
from telemetry_core.settings import Settings
from tests.bench.pool_gate import CONCURRENCY, POOL_SIZE, QUERIES, SERIES, pool_of, q2_postgres, run_round

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-series-batches.md"
ROUNDS = 6
BATCH = Settings().query_batch_max


def _pg_cpu(pid: int) -> float:
    root, total = psutil.Process(pid), 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def measure(url: str, pg_pid: int) -> dict[str, list[tuple[float, float, float, int, int]]]:
    """Per pool: rounds of (queries/s, our µs/query, PostgreSQL µs/query, buckets, statements)."""
    pools: dict[str, AsyncConnectionPool] = {
        "each in its own statement (TELEMETRY_QUERY_BATCH=0)": pool_of(LeanPool, url),
        f"batched, up to {BATCH} a statement (the default)": pool_of(LeanPool, url),
    }
    batch_series_reads(list(pools.values())[1], BATCH)
    for pool in pools.values():
        await pool.open(wait=True)
    results: dict[str, list[tuple[float, float, float, int, int]]] = {name: [] for name in pools}
    try:
        for r in range(ROUNDS):
            for name in list(pools) if r % 2 == 0 else list(reversed(pools)):
                batches = batches_of(pools[name])
                before = batches.statements if batches else 0
                pg0 = _pg_cpu(pg_pid)
                rate, cpu, buckets = await run_round(pools[name])
                pg = (_pg_cpu(pg_pid) - pg0) / QUERIES * 1e6
                statements = (batches.statements - before) if batches else QUERIES
                results[name].append((rate, cpu, pg, buckets, statements))
                print(name, round(rate), round(cpu), round(pg), buckets, statements, file=sys.stderr, flush=True)
    finally:
        for pool in pools.values():
            await pool.close()
    return results


def table(results: dict[str, list[tuple[float, float, float, int, int]]]) -> list[str]:
    first = next(iter(results.values()))
    base_rate, base_cpu = statistics.median(r[0] for r in first), statistics.median(r[1] for r in first)
    base_pg = statistics.median(r[2] for r in first)
    lines = [
        "| reads | queries/s | vs each alone | gateway CPU µs/query | PostgreSQL CPU µs/query | statements a round "
        "| buckets a round |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rounds in results.items():
        rate = statistics.median(r[0] for r in rounds)
        cpu = statistics.median(r[1] for r in rounds)
        pg = statistics.median(r[2] for r in rounds)
        statements = statistics.median(r[4] for r in rounds)
        lines.append(
            f"| {name} | {rate:,.0f} | {rate / base_rate:.2f}x | {cpu:.0f} ({cpu / base_cpu:.2f}x) "
            f"| {pg:.0f} ({pg / base_pg:.2f}x) | {statements:,.0f} | {rounds[0][3]:,} |"
        )
    return lines


def main() -> None:
    with q2_postgres() as server:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        results = event_loop.run(measure(server.url, server.proc.pid))  # uvloop, as the gateway runs
        took = time.perf_counter() - started
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# One-series aggregates at 50 concurrent requests: one statement each, or batched",
        "",
        f"Written by `python -m tests.bench.series_batches` (part of `make bench`) on {stamp}, {os.cpu_count()} "
        f"cores, load average {load:.1f} before the run, {took:.0f} s. {CONCURRENCY} concurrent callers, "
        f"{QUERIES:,} queries a round, {ROUNDS} rounds alternating, medians; q2 (one series, 1 h buckets over 24 h "
        f"from rollup_hour, gateway/views/aggregates.py) over {SERIES} series through a {POOL_SIZE}-connection "
        "LeanPool. Gateway CPU is the calling process's; PostgreSQL's is every backend of the server. See the "
        "module's docstring for the method.",
        "",
        *table(results),
        "",
        "Both return the same buckets (tests/integration/test_series_batches.py compares every answer). Batched: "
        "requests of one shape waiting for a connection run as one statement, the one-series statement applied "
        "to each row of an unnest of their series and ranges (gateway/views/series_batches.py).",
    ]
    print("\n".join(lines))
    if "--write" in sys.argv:
        DOC.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
