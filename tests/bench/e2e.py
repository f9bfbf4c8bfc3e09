"""End-to-end sustained ingestion: batches over HTTP, counted only once they are queryable in PostgreSQL.

Rate = acknowledged points / (first send → the moment a count(*) of the run's devices equals the
acknowledged count). The bodies are encoded before the clock starts (and outside the CPU window).
"""

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec
import psycopg

from telemetry_core.topology import INGEST
from tests.bench.backlog import Backlog
from tests.bench.client import Poster, make_client
from tests.bench.data import METRICS, PointMaker, batch_body, hour_ago

COUNT_SQL = "SELECT count(*) FROM telemetry.points WHERE device_id = ANY(%s)"


def batch_path(device_id: str) -> str:
    return f"/api/v1/telemetry/devices/{device_id}/telemetry/batch"


@dataclass(frozen=True)
class SustainedResult:
    points_acked: int
    batches: int
    acked_s: float  # first send → last acknowledgement
    queryable_s: float  # first send → every acknowledged point counted by SELECT count(*)
    max_backlog: dict[str, int]  # largest consumer backlog (messages) seen while sending

    @property
    def rate(self) -> float:
        return self.points_acked / self.queryable_s

    @property
    def acked_rate(self) -> float:
        return self.points_acked / self.acked_s


def build_batches(
    prefix: str, total: int, batch_size: int, devices: int, metrics: Sequence[str] = METRICS
) -> list[tuple[str, bytes]]:
    """(device_id, body) per batch; batch b goes to device b % devices."""
    per_device = -(-total // devices)
    start = hour_ago()
    makers = [PointMaker(start, per_device, seed=d, metrics=metrics) for d in range(devices)]
    out = []
    for b in range(-(-total // batch_size)):
        d = b % devices
        n = min(batch_size, total - b * batch_size)
        out.append((f"{prefix}-{d:03d}", batch_body(makers[d].points(n))))
    return out


_ack = msgspec.json.Decoder()


SHED_BACKOFF_S = 1.0  # the gateway's Retry-After while shedding is at least 1 s


async def post_batches(client: Poster, batches: Iterable[tuple[str, bytes]], concurrency: int) -> int:
    """Send every batch with ``concurrency`` clients; return the points acknowledged."""
    todo = iter(batches)
    acked = 0

    async def worker() -> None:
        nonlocal acked
        for device_id, body in todo:
            status, data = await client.post(batch_path(device_id), body)
            while status == 503 and b"shedding load" in data:
                # Storage is over TELEMETRY_MAX_INGEST_BACKLOG behind: back off as a client should (Retry-After).
                await asyncio.sleep(SHED_BACKOFF_S)
                status, data = await client.post(batch_path(device_id), body)
            if status != 200:
                raise RuntimeError(f"batch for {device_id}: HTTP {status}: {data[:300]!r}")
            acked += int(_ack.decode(data)["ingested_count"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return acked


async def acked_batch_rate(
    url: str, headers: dict[str, str], prefix: str, points: int, batch: int, concurrency: int
) -> float:
    """Acknowledged points/s of ``points`` posted as ``batch``-point batches over 8 devices (fresh client)."""
    client = make_client("httpx", url, headers, concurrency)
    try:
        batches = build_batches(prefix, points, batch, devices=8)
        start = time.perf_counter()
        acked = await post_batches(client, batches, concurrency)
        elapsed = time.perf_counter() - start
    finally:
        await client.aclose()
    if acked != points:
        raise RuntimeError(f"{prefix}: {acked} of {points} points acknowledged")
    return acked / elapsed


async def count_points(database_url: str, devices: list[str]) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute(COUNT_SQL, (devices,))).fetchone()
    return row[0] if row else 0


async def wait_queryable(
    database_url: str, backlog: Backlog, devices: list[str], expected: int, timeout_s: float
) -> float:
    """Wait until every acknowledged point is queryable; return perf_counter() at that moment.

    Polling count(*) would perturb what it measures: over a million rows it is a parallel scan that
    keeps PostgreSQL busy on both cores while the worker drains. Instead the ingest consumer's
    counters are polled (cheap): the worker acks a message only after its transaction committed, so
    "nothing pending, nothing unacked" means every point is committed (noted a few ms late: the ack
    follows the notices). One count(*) then confirms it; only if it falls short is count(*) polled.
    """
    deadline = time.perf_counter() + timeout_s
    while await backlog.pending_of(INGEST):
        if time.perf_counter() > deadline:
            raise TimeoutError(
                f"ingest consumer still has {await backlog.pending_of(INGEST)} messages after {timeout_s}s"
            )
        await asyncio.sleep(0.005)
    at = time.perf_counter()
    while True:
        count = await count_points(database_url, devices)
        if count > expected:
            raise RuntimeError(f"{count} points stored for {expected} acknowledged")
        if count == expected:
            return at
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {count} of {expected} acknowledged points queryable after {timeout_s}s")
        await asyncio.sleep(0.02)
        at = time.perf_counter()  # the consumer was idle before the rows were there: time it by count(*)


async def warm_up(client: Poster, database_url: str, backlog: Backlog, batches: int, concurrency: int) -> None:
    """A few batches through the whole path first (connections, partitions, JIT-free but cache-warm)."""
    warm = build_batches("bench-warm", batches * 1000, 1000, max(1, batches // 2))
    acked = await post_batches(client, warm, concurrency)
    await wait_queryable(database_url, backlog, sorted({d for d, _ in warm}), acked, 60.0)
    await backlog.wait_idle(60.0)


async def run_sustained(
    client: Poster,
    database_url: str,
    backlog: Backlog,
    batches: list[tuple[str, bytes]],
    *,
    concurrency: int,
    timeout_s: float,
) -> SustainedResult:
    """Send ``batches`` (built beforehand, see build_batches); return once every acknowledged point is queryable.

    The projection may still be catching up when this returns: callers wait for the backlog to empty
    after their CPU window closes.
    """
    device_ids = sorted({d for d, _ in batches})
    max_backlog: dict[str, int] = {}
    stop = asyncio.Event()

    async def watch_backlog() -> None:
        while not stop.is_set():
            for name, n in (await backlog.pending()).items():
                max_backlog[name] = max(max_backlog.get(name, 0), n)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    # Stopped by an event, not cancelled: nats-py swallows a CancelledError that lands while it flushes a
    # request (nats/aio/client.py, `except asyncio.CancelledError: pass`), and the cancelled watcher then
    # polled forever. It is awaited only after the queryable moment, so its last poll delays nothing.
    watcher = asyncio.create_task(watch_backlog())
    start = time.perf_counter()
    try:
        acked = await post_batches(client, batches, concurrency)
        acked_at = time.perf_counter()
        stop.set()
        queryable_at = await wait_queryable(database_url, backlog, device_ids, acked, timeout_s)
    finally:
        stop.set()
        await watcher
    return SustainedResult(
        points_acked=acked,
        batches=len(batches),
        acked_s=acked_at - start,
        queryable_s=queryable_at - start,
        max_backlog=max_backlog,
    )
