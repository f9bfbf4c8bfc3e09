"""Acknowledged-to-queryable lag at a moderate, open-loop rate.

Every batch goes to its own device id, so "the batch is queryable" is "a row of that device
exists" (a batch is one NATS message, written in one transaction: all its points appear at once).
A poller on its own connection asks, every ~2 ms, which of the sent-but-not-yet-seen devices have
rows in telemetry.points (what the query API reads) and in telemetry.latest_values (what /latest
reads). Lag = time first seen - time the client got the 200. It can be slightly negative when the
poll sees a batch before its HTTP response arrives.
"""

import asyncio
import time
from dataclasses import dataclass, field

import psycopg

from tests.bench.client import Poster
from tests.bench.data import PointMaker, batch_body, hour_ago
from tests.bench.e2e import batch_path
from tests.bench.stats import percentile

# One index probe per device (not every row of it): the poller runs every ~2 ms and must stay cheap.
# Written so that no statistics can turn it into a scan of the whole table. The obvious
# `WHERE EXISTS (SELECT 1 FROM points p WHERE p.device_id = d)` becomes a semi-join, and after a big load
# (a partition not yet analyzed, or few distinct devices) PostgreSQL plans that as a seq scan of every
# point + HashAggregate by device: 150-450 ms per poll over a million rows, until autovacuum's ANALYZE
# happens to run. That made the lag phase measure the poller (and the CPU it took) instead of the
# pipeline, and made before/after comparisons depend on when autovacuum ran. A LATERAL subquery with
# LIMIT 1 in primary-key order is never pulled up into a join, and the ordered LIMIT makes the
# primary-key index the cheapest path whatever the statistics say (tests/integration/test_bench_lag_probe.py).
_SEEN_POINTS = (
    "SELECT d FROM unnest(%s::text[]) AS d CROSS JOIN LATERAL ("
    "SELECT 1 FROM telemetry.points p WHERE p.device_id = d ORDER BY p.device_id, p.metric_name, p.time LIMIT 1"
    ") AS hit"
)
_SEEN_LATEST = "SELECT device_id FROM telemetry.latest_values WHERE device_id = ANY(%s)"


@dataclass
class LagResult:
    batches: int
    points_per_batch: int
    interval_ms: float
    send_s: float
    ack_latency: list[float] = field(default_factory=list)  # POST → 200, per batch
    to_points: list[float] = field(default_factory=list)  # 200 → rows in telemetry.points
    to_latest: list[float] = field(default_factory=list)  # 200 → row in telemetry.latest_values
    poll_cycle_s: float = 0.0  # mean time between two polls of the same table
    devices: list[str] = field(default_factory=list)  # per batch, in the order of the lists above
    acked_wall: list[float] = field(default_factory=list)  # per batch: when the 200 came, as time.time()

    def p(self, which: str, q: float) -> float:
        return percentile(getattr(self, which), q)


async def run_lag(
    client: Poster,
    database_url: str,
    *,
    batches: int,
    points: int,
    interval_ms: float,
    timeout_s: float,
    prefix: str = "bench-lag",
) -> LagResult:
    start_time = hour_ago()
    bodies = []
    for i in range(batches):
        device_id = f"{prefix}-{i:05d}"
        bodies.append((device_id, batch_body(PointMaker(start_time, points, seed=i).points(points))))
    sent_at: dict[str, float] = {}
    acked_at: dict[str, float] = {}
    seen_points: dict[str, float] = {}
    seen_latest: dict[str, float] = {}
    done_sending = asyncio.Event()

    async def send(device_id: str, body: bytes) -> None:
        sent_at[device_id] = time.perf_counter()
        status, data = await client.post(batch_path(device_id), body)
        acked_at[device_id] = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"lag batch for {device_id}: HTTP {status}: {data[:300]!r}")

    async def sender() -> float:
        tasks = []
        t0 = time.perf_counter()
        for i, (device_id, body) in enumerate(bodies):
            delay = t0 + i * interval_ms / 1000 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(device_id, body)))
        await asyncio.gather(*tasks)
        done_sending.set()
        return time.perf_counter() - t0

    async def poller() -> int:
        cycles = 0
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            deadline = None
            while True:
                for sql, seen in ((_SEEN_POINTS, seen_points), (_SEEN_LATEST, seen_latest)):
                    pending = [d for d in sent_at if d not in seen]
                    if pending:
                        rows = await (await conn.execute(sql, (pending,))).fetchall()
                        now = time.perf_counter()
                        for (device_id,) in rows:
                            seen[device_id] = now
                cycles += 1
                if done_sending.is_set():
                    if len(seen_points) == len(seen_latest) == len(bodies):
                        return cycles
                    deadline = deadline or time.perf_counter() + timeout_s
                    if time.perf_counter() > deadline:
                        raise TimeoutError(
                            f"lag run: {len(seen_points)}/{len(bodies)} batches in points, "
                            f"{len(seen_latest)}/{len(bodies)} in latest_values after {timeout_s}s"
                        )
                await asyncio.sleep(0.002)

    wall_offset = time.time() - time.perf_counter()  # to compare with server-side timestamps
    poll_start = time.perf_counter()
    send_s, cycles = await asyncio.gather(sender(), poller())
    poll_s = time.perf_counter() - poll_start
    result = LagResult(batches, points, interval_ms, send_s, poll_cycle_s=poll_s / max(cycles, 1))
    for device_id in sent_at:
        result.ack_latency.append(acked_at[device_id] - sent_at[device_id])
        result.to_points.append(seen_points[device_id] - acked_at[device_id])
        result.to_latest.append(seen_latest[device_id] - acked_at[device_id])
        result.devices.append(device_id)
        result.acked_wall.append(acked_at[device_id] + wall_offset)
    return result
