"""Statistics and health latency, and the cost of the stats projection on ingestion (issue 12).

``python -m tests.bench.stats_bench`` (part of `make bench`; prints its figures and writes
docs/benchmarks-stats.md). Steps:

1. Load a data set over HTTP: ``BENCH_STATS_DEVICES`` devices x ``BENCH_STATS_METRICS`` metrics, one point
   every 10 minutes over the day before the current hour; wait until every consumer has acknowledged it.
2. p50/p99 of GET /devices/{id}/stats (random device) and GET /stats at concurrency 16, and /health at
   concurrency 1 and 16 (closed loop, after a warm-up).
3. Ingest rate with the stats projection vs without it (a projection worker whose list lacks
   device_stats), in the order without, with, with, without; each run posts ``BENCH_STATS_INGEST_POINTS``
   points and is timed from the first send until the ingest consumer has acknowledged all. Before each
   run every consumer is idle (after a "without" run the full projection worker catches up first), so no
   run pays for another's backlog. Note: the ingest worker's insert counting (RETURNING, first_seq) is in
   both conditions; this ratio is the projection's cost alone.
"""

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telemetry_core.topology import INGEST
from tests.bench.backlog import Backlog
from tests.bench.bench_stack import bench_stack
from tests.bench.client import Poster, make_client
from tests.bench.e2e import build_batches, post_batches
from tests.bench.stats import percentile
from tests.support.stack import Stack

_WITHOUT_STATS = (
    "import projection_worker.main as m\n"
    "from projection_worker.projections import device_stats\n"
    "m.PROJECTIONS.remove(device_stats)\n"
    "m.main()\n"
)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def say(message: str) -> None:
    print(f"[stats-bench] {message}", flush=True)


def dataset_batches(devices: int, metrics: int) -> list[tuple[str, bytes]]:
    """One device's day per batch group: 72 steps x ``metrics`` per batch."""
    import msgspec

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    steps = [end - timedelta(minutes=10 * i) for i in range(1, 145)]
    out = []
    for d in range(devices):
        for chunk in (steps[:72], steps[72:]):
            points = [
                {"timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "metric_name": f"m{m:02d}", "value": random.random()}
                for t in chunk
                for m in range(metrics)
            ]
            out.append((f"stats-dev-{d:04d}", msgspec.json.encode({"data_points": points})))
    return out


async def closed_loop(
    client: Poster, paths: Callable[[], str], requests: int, concurrency: int, warmup: int = 100
) -> list[float]:
    """Latencies (s) of ``requests`` GETs by ``concurrency`` clients, after ``warmup`` unrecorded ones."""
    latencies: list[float] = []
    left = warmup + requests

    async def one() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            record = left < requests
            t = time.perf_counter()
            status, body = await client.get(paths())
            if status != 200:
                raise RuntimeError(f"GET {status}: {body[:200]!r}")
            if record:
                latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return latencies


def line(name: str, lat: list[float]) -> str:
    return (f"{name}: n={len(lat)} p50={percentile(lat, 50) * 1000:.2f} ms p99={percentile(lat, 99) * 1000:.2f} ms "
            f"max={max(lat) * 1000:.2f} ms")  # fmt: skip


async def ingest_run(client: Poster, backlog: Backlog, prefix: str, points: int) -> float:
    """Points per second from the first send until the ingest consumer acked everything."""
    batches = build_batches(prefix, points, 1000, 50)
    t0 = time.perf_counter()
    acked = await post_batches(client, batches, 8)
    await backlog.wait_idle(600, (INGEST,))
    return acked / (time.perf_counter() - t0)


async def bench(stack: Stack) -> None:
    devices, metrics = _env_int("BENCH_STATS_DEVICES", 100), _env_int("BENCH_STATS_METRICS", 10)
    requests, ingest_points = _env_int("BENCH_STATS_REQUESTS", 2000), _env_int("BENCH_STATS_INGEST_POINTS", 100_000)
    client = make_client("raw", stack.url, stack.headers, 16)
    backlog = await Backlog.connect(stack.servers.nats_url)
    try:
        batches = dataset_batches(devices, metrics)
        say(f"loading {devices} devices x {metrics} metrics x 144 points ({len(batches)} batches)")
        t0 = time.perf_counter()
        await post_batches(client, batches, 8)
        await backlog.wait_idle(900)
        say(f"loaded and projected in {time.perf_counter() - t0:.1f} s")

        def device_path() -> str:
            return f"/api/v1/telemetry/devices/stats-dev-{random.randrange(devices):04d}/stats"

        results = [
            line("device stats c=16", await closed_loop(client, device_path, requests, 16)),
            line("service stats c=16", await closed_loop(client, lambda: "/api/v1/telemetry/stats", requests // 4, 16)),
            line("/health c=1", await closed_loop(client, lambda: "/health", requests, 1)),
            line("/health c=16", await closed_loop(client, lambda: "/health", requests, 16)),
        ]
        for r in results:
            say(r)
        _write(results, devices, metrics)

        if not ingest_points:
            return
        rates: dict[str, list[float]] = {"with": [], "without": []}
        for i, condition in enumerate(("without", "with", "with", "without")):
            if condition == "without":
                stack.procs["projection-worker"].terminate()
                stack.procs["projection-worker"].wait(15)
                stack.procs["projection-worker"] = subprocess.Popen(  # noqa: ASYNC220 - a bench, between runs
                    [sys.executable, "-c", _WITHOUT_STATS], env=stack.env(),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(3)  # its consumers are bound before the clock starts
            rate = await ingest_run(client, backlog, f"stats-ing-{i}", ingest_points)
            rates[condition].append(rate)
            say(f"ingest {condition} the stats projection: {rate:,.0f} points/s")
            if condition == "without":
                stack.procs["projection-worker"].terminate()
                stack.procs["projection-worker"].wait(15)
                stack.start("projection-worker")
            await backlog.wait_idle(900)  # nobody starts with another run's backlog
        with_r, without_r = sum(rates["with"]) / 2, sum(rates["without"]) / 2
        ratio = (f"ingest rate with / without the stats projection: {with_r:,.0f} / {without_r:,.0f} points/s = "
                 f"{with_r / without_r:.3f} (target >= 0.95)")  # fmt: skip
        say(ratio)
        _write([*results, ratio], devices, metrics)
    finally:
        await backlog.close()
        await client.aclose()


DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-stats.md"


def _write(lines: list[str], devices: int, metrics: int) -> None:
    """docs/benchmarks-stats.md: this run's figures (targets: device stats p99 20 ms, service 50 ms, /health 5 ms)."""
    body = "\n".join(f"- {line}" for line in lines)
    DOC.write_text(
        f"# Statistics benchmark\n\nWritten by `python -m tests.bench.stats_bench` (part of `make bench`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, with {devices} devices x {metrics} "
        "metrics x 144 points loaded. Targets (issue 12): device stats p99 20 ms and service stats p99 50 ms at "
        "concurrency 16, /health p99 5 ms, ingest with the stats projection >= 0.95 of without.\n\n"
        f"{body}\n"
    )


def main() -> None:
    with bench_stack("telemetry-stats-bench-") as (_root, _servers, stack):
        stack.start_all()
        asyncio.run(bench(stack))


if __name__ == "__main__":
    main()
