"""End-to-end sustained ingestion: batches over HTTP, counted only once they are queryable in PostgreSQL.

Rate = acknowledged points / (first send → the moment a count(*) of the run's devices equals the
acknowledged count). The bodies are encoded before the clock starts.
"""

import asyncio
import time
from dataclasses import dataclass

import msgspec
import psycopg

from tests.bench.backlog import Backlog
from tests.bench.client import Poster
from tests.bench.data import PointMaker, batch_body, hour_ago

COUNT_SQL = "SELECT count(*) FROM telemetry.points WHERE device_id = ANY(%s)"


def batch_path(device_id: str) -> str:
    return f"/api/v1/telemetry/devices/{device_id}/telemetry/batch"


@dataclass(frozen=True)
class SustainedResult:
    points_acked: int
    batches: int
    acked_s: float  # first send → last acknowledgement
    queryable_s: float  # first send → every acknowledged point counted by SELECT count(*)
    projection_s: float  # first send → the latest_values projection has acked every notice
    max_backlog: dict[str, int]  # largest consumer backlog (messages) seen while sending

    @property
    def rate(self) -> float:
        return self.points_acked / self.queryable_s

    @property
    def acked_rate(self) -> float:
        return self.points_acked / self.acked_s


def build_batches(prefix: str, total: int, batch_size: int, devices: int) -> list[tuple[str, bytes]]:
    """(device_id, body) per batch; batch b goes to device b % devices."""
    per_device = -(-total // devices)
    start = hour_ago()
    makers = [PointMaker(start, per_device, seed=d) for d in range(devices)]
    out = []
    for b in range(-(-total // batch_size)):
        d = b % devices
        n = min(batch_size, total - b * batch_size)
        out.append((f"{prefix}-{d:03d}", batch_body(makers[d].points(n))))
    return out


_ack = msgspec.json.Decoder()


async def post_batches(client: Poster, batches: list[tuple[str, bytes]], concurrency: int) -> int:
    """Send every batch with ``concurrency`` clients; return the points acknowledged."""
    todo = iter(batches)
    acked = 0

    async def worker() -> None:
        nonlocal acked
        for device_id, body in todo:
            status, data = await client.post(batch_path(device_id), body)
            if status != 200:
                raise RuntimeError(f"batch for {device_id}: HTTP {status}: {data[:300]!r}")
            acked += int(_ack.decode(data)["ingested_count"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return acked


async def wait_queryable(database_url: str, devices: list[str], expected: int, timeout_s: float) -> float:
    """Poll count(*) until it reaches ``expected``; return perf_counter() at that moment."""
    deadline = time.perf_counter() + timeout_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(COUNT_SQL, (devices,))).fetchone()
            now = time.perf_counter()
            count = row[0] if row else 0
            if count >= expected:
                if count > expected:
                    raise RuntimeError(f"{count} points stored for {expected} acknowledged")
                return now
            if now > deadline:
                raise TimeoutError(f"only {count} of {expected} acknowledged points queryable after {timeout_s}s")
            await asyncio.sleep(0.02)


async def warm_up(client: Poster, database_url: str, backlog: Backlog, batches: int, concurrency: int) -> None:
    """A few batches through the whole path first (connections, partitions, JIT-free but cache-warm)."""
    warm = build_batches("bench-warm", batches * 1000, 1000, max(1, batches // 2))
    acked = await post_batches(client, warm, concurrency)
    await wait_queryable(database_url, sorted({d for d, _ in warm}), acked, 60.0)
    await backlog.wait_idle(60.0)


async def run_sustained(
    client: Poster,
    database_url: str,
    backlog: Backlog,
    *,
    total: int,
    batch_size: int,
    devices: int,
    concurrency: int,
    timeout_s: float,
    prefix: str = "bench-e2e",
) -> SustainedResult:
    batches = build_batches(prefix, total, batch_size, devices)
    device_ids = sorted({d for d, _ in batches})
    max_backlog: dict[str, int] = {}
    sending = True

    async def watch_backlog() -> None:
        while sending:
            for name, n in (await backlog.pending()).items():
                max_backlog[name] = max(max_backlog.get(name, 0), n)
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_backlog())
    start = time.perf_counter()
    try:
        acked = await post_batches(client, batches, concurrency)
        acked_at = time.perf_counter()
    finally:
        sending = False
        await watcher
    queryable_at = await wait_queryable(database_url, device_ids, acked, timeout_s)
    await backlog.wait_idle(timeout_s)
    projected_at = time.perf_counter()
    return SustainedResult(
        points_acked=acked,
        batches=len(batches),
        acked_s=acked_at - start,
        queryable_s=queryable_at - start,
        projection_s=projected_at - start,
        max_backlog=max_backlog,
    )
