"""Only the ack → queryable lag phase of `make bench`, a few times, on a fresh stack (minutes, not an hour).

    python -m tests.bench.lag_only            # BENCH_LAG_RUNS runs (default 3) of the lag phase

For comparing two builds on a shared machine: run this in both checkouts alternately. Knobs besides
the lag ones of tests/bench/config.py (BENCH_LAG_BATCHES, BENCH_LAG_BATCH_POINTS, BENCH_LAG_INTERVAL_MS):

* ``BENCH_LAG_RUNS``: how many lag runs on the same stack (after one warm-up);
* ``BENCH_LAG_PRELOAD``: points sent (sustained, as `make bench` does before its lag phase) first;
* ``BENCH_POSTGRES_BIN``: a PostgreSQL bin directory to run instead of the wheel's (e.g. another build);
* ``BENCH_SHOW_ALL``: a file to write the server's ``SHOW ALL`` to (to diff two servers' settings);
* ``BENCH_LAG_HOPS=1``: also split each lag at the commit (PostgreSQL runs with track_commit_timestamp):
  ack → commit of the batch's rows (the pipeline) and commit → first seen by the poller (the observer);
* ``BENCH_KEEP=1``: keep the temporary directory (servers' data and the stack's logs).
"""

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import uvloop

from telemetry_core import embedded
from telemetry_core.migrate import migrate
from tests.bench.backlog import Backlog
from tests.bench.client import make_client
from tests.bench.config import BenchConfig
from tests.bench.e2e import build_batches, run_sustained, warm_up
from tests.bench.lag import LagResult, run_lag
from tests.support.servers import Servers
from tests.support.stack import Stack


def say(message: str) -> None:
    print(f"[lag] {message}", flush=True)


def _line(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    pick = [ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000 for q in (10, 50, 90, 99)]
    return f"{name:>10}: p10 {pick[0]:7.1f}  p50 {pick[1]:7.1f}  p90 {pick[2]:7.1f}  p99 {pick[3]:7.1f} ms"


def report(run: int, r: LagResult) -> None:
    say(f"run {run}: {r.batches} batches of {r.points_per_batch}, one per {r.interval_ms:g} ms, "
        f"poll cycle {r.poll_cycle_s * 1000:.1f} ms")  # fmt: skip
    for name, values in (("ack", r.ack_latency), ("→ points", r.to_points), ("→ latest", r.to_latest)):
        say(_line(name, values))


_COMMITS = {
    "points": "SELECT device_id, min(pg_xact_commit_timestamp(xmin)) FROM telemetry.points "
    "WHERE device_id = ANY(%s) GROUP BY device_id",
    "latest": "SELECT device_id, min(pg_xact_commit_timestamp(xmin)) FROM telemetry.latest_values "
    "WHERE device_id = ANY(%s) GROUP BY device_id",
}


async def report_hops(db: str, r: LagResult) -> None:
    """Split each lag at the commit that made the rows visible (needs track_commit_timestamp)."""
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        for table, seen in (("points", r.to_points), ("latest", r.to_latest)):
            rows = await (await conn.execute(_COMMITS[table], (r.devices,))).fetchall()
            committed = {d: ts.timestamp() for d, ts in rows if ts is not None}
            to_commit, after_commit = [], []
            for device, acked, lag in zip(r.devices, r.acked_wall, seen, strict=True):
                if device in committed:
                    to_commit.append(committed[device] - acked)
                    after_commit.append(acked + lag - committed[device])
            say(_line(f"→ {table} commit", to_commit))
            say(_line(f"{table} commit → seen", after_commit))


def show_all(database_url: str, path: Path) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name, setting FROM pg_settings ORDER BY name").fetchall()
    path.write_text("".join(f"{name} = {setting}\n" for name, setting in rows))


async def measure(cfg: BenchConfig, stack: Stack, db: str, nats_url: str, runs: int, preload: int, hops: bool) -> None:
    backlog = await Backlog.connect(nats_url)
    client = make_client(cfg.client, stack.url, stack.headers, cfg.concurrency)
    try:
        await warm_up(client, db, backlog, cfg.concurrency * 2, cfg.concurrency)
        if preload:
            say(f"preload: {preload:,} points")
            batches = build_batches("bench-pre", preload, cfg.batch_size, cfg.devices)
            await run_sustained(client, db, backlog, batches, concurrency=cfg.concurrency, timeout_s=600)
            await backlog.wait_idle(600)
        for run in range(1, runs + 1):
            result = await run_lag(
                client, db, batches=cfg.lag_batches, points=cfg.lag_batch_points,
                interval_ms=cfg.lag_interval_ms, timeout_s=cfg.drain_timeout_s, prefix=f"bench-lag-{run}",
            )  # fmt: skip
            report(run, result)
            if hops:
                await report_hops(db, result)
            await backlog.wait_idle(cfg.drain_timeout_s)
    finally:
        await client.aclose()
        await backlog.close()


def main() -> None:
    cfg = BenchConfig.from_env()
    runs = int(os.environ.get("BENCH_LAG_RUNS", "3"))
    preload = int(os.environ.get("BENCH_LAG_PRELOAD", "0"))
    bin_dir = os.environ.get("BENCH_POSTGRES_BIN", "").strip()
    if bin_dir:
        embedded._postgres_bin = lambda: Path(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="telemetry-lag-"))
    nats = embedded.start_nats(root / "nats")
    postgres = embedded.start_postgres(root / "postgres", durable=True)
    stack: Stack | None = None
    hops = os.environ.get("BENCH_LAG_HOPS", "") == "1"
    try:
        if hops:
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")  # takes a restart
            postgres.stop()
            postgres = embedded.start_postgres(root / "postgres", port=postgres.port, durable=True)
        migrate(postgres.url)
        if os.environ.get("BENCH_SHOW_ALL"):
            show_all(postgres.url, Path(os.environ["BENCH_SHOW_ALL"]))
        with psycopg.connect(postgres.url) as conn:
            say(f"{conn.execute('SELECT version()').fetchone()[0]}; data under {root}")  # type: ignore[index]
        stack = Stack(Servers(nats, postgres), root / "logs", suite_settings=False)
        stack.start_all()
        uvloop.run(measure(cfg, stack, postgres.url, nats.url, runs, preload, hops))
    finally:
        if stack is not None:
            stack.stop_all()
        postgres.stop()
        nats.stop()
        if os.environ.get("BENCH_KEEP", "") == "1":
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
