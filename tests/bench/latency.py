"""Single-point POST latency: ``concurrency`` closed-loop clients, each on its own device."""

import asyncio
import time
from dataclasses import dataclass

from tests.bench.client import Poster
from tests.bench.data import PointMaker, hour_ago, point_body


@dataclass(frozen=True)
class LatencyResult:
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def single_path(device_id: str) -> str:
    return f"/api/v1/telemetry/devices/{device_id}/telemetry"


async def run_latency(client: Poster, *, requests: int, concurrency: int, warmup: int = 200) -> LatencyResult:
    per_client = -(-requests // concurrency)
    warm_per_client = -(-warmup // concurrency)
    start = hour_ago()
    plans = []
    for c in range(concurrency):
        maker = PointMaker(start, per_client + warm_per_client, seed=500 + c)
        bodies = [point_body(p) for p in maker.points(per_client + warm_per_client)]
        plans.append((f"bench-lat-{c:02d}", bodies[:warm_per_client], bodies[warm_per_client:]))
    latencies: list[float] = []

    async def one(device_id: str, bodies: list[bytes], record: bool) -> None:
        path = single_path(device_id)
        for body in bodies:
            t = time.perf_counter()
            status, data = await client.post(path, body)
            if record:
                latencies.append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"single point for {device_id}: HTTP {status}: {data[:300]!r}")

    await asyncio.gather(*(one(d, warm, False) for d, warm, _ in plans))
    t0 = time.perf_counter()
    await asyncio.gather(*(one(d, timed, True) for d, _, timed in plans))
    seconds = time.perf_counter() - t0
    return LatencyResult(len(latencies), concurrency, seconds, latencies)
