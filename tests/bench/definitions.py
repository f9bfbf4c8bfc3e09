"""Metric definitions: ingestion with definitions in force vs none, and GET-by-name latency.

Validation against a definition happens in the gateway (from its in-memory cache), so both the
gateway's acceptance rate (HTTP 200s) and the end-to-end queryable rate are measured. The two
conditions use disjoint metric names: the "none" points name metrics that have no definition, the
"defined" points name the 100 defined ones (numeric, bounds wider than any value sent). Runs go in
ABBA order (none, defined, defined, none), each half with its own devices, so that drift during the
run (the points table grows, other jobs on the machine) falls on both conditions alike.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import structlog
from nats.js import JetStreamContext

from gateway.batch_validation import check_points
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_schemas.api.ingest import BatchRequest
from tests.bench.client import Poster
from tests.bench.data import VALUE_MAX, VALUE_MIN, PointMaker, batch_body, hour_ago, point_body
from tests.bench.e2e import SustainedResult
from tests.bench.latency import LatencyResult, single_path

METRICS_PATH = "/api/v1/telemetry/metrics"
_decoder = msgspec.json.Decoder()


def defined_names(n: int) -> list[str]:
    return [f"bench-def-m{i:03d}" for i in range(n)]


def undefined_names(n: int) -> list[str]:
    return [f"bench-nodef-m{i:03d}" for i in range(n)]


def bounds(i: int) -> tuple[float, float]:
    """Every metric gets its own bounds, all wider than [VALUE_MIN, VALUE_MAX]: no point is rejected."""
    return VALUE_MIN - 10.0 - i, VALUE_MAX + 10.0 + i


async def create_definitions(client: Poster, names: Sequence[str], concurrency: int = 4) -> float:
    """POST each definition (201 expected); return the seconds it took.

    Each POST returns once the definition is readable and enforced at ingestion (it waits for the
    projection and the gateway's cache), so this is also the write path's latency, not only its rate.
    """
    todo = iter(enumerate(names))

    async def worker() -> None:
        for i, name in todo:
            low, high = bounds(i)
            body = msgspec.json.encode({"name": name, "data_type": "numeric", "min_value": low, "max_value": high})
            status, data = await client.post(METRICS_PATH, body)
            if status != 201:
                raise RuntimeError(f"creating metric {name}: HTTP {status}: {data[:300]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def check_enforced(client: Poster, names: Sequence[str]) -> None:
    """A point above its metric's max_value must be refused (422), or the "defined" run validates nothing."""
    high = bounds(0)[1]
    point = PointMaker(hour_ago(), 1, seed=0, metrics=[names[0]]).points(1)[0]
    point["value"] = high + 1.0
    status, data = await client.post(single_path("bench-def-probe"), point_body(point))
    if status != 422:
        raise RuntimeError(f"definition of {names[0]} not enforced: out-of-bounds point got HTTP {status}: {data!r}")


@dataclass
class DefinitionsResult:
    definitions: int
    create_s: float
    segments: list[tuple[int, str, SustainedResult]] = field(default_factory=list)  # (round, condition, run)
    gateway_cpu_s: dict[str, float] = field(default_factory=dict)  # condition → gateway CPU seconds, summed
    in_process_us: dict[str, float] = field(default_factory=dict)  # condition → µs per point, see validation_cost

    def _runs(self, cond: str, rnd: int | None = None) -> list[SustainedResult]:
        return [s for r, c, s in self.segments if c == cond and (rnd is None or r == rnd)]

    def points(self, cond: str) -> int:
        return sum(h.points_acked for h in self._runs(cond))

    def gateway_us_per_point(self, cond: str) -> float:
        """Gateway CPU per accepted point (µs): validation cost with little of the rates' noise."""
        return 1e6 * self.gateway_cpu_s.get(cond, 0.0) / max(self.points(cond), 1)

    def rate(self, cond: str, rnd: int | None = None) -> float:
        """Queryable points/s over the condition's segments together (of one round, or all)."""
        runs = self._runs(cond, rnd)
        return sum(h.points_acked for h in runs) / sum(h.queryable_s for h in runs)

    def acked_rate(self, cond: str, rnd: int | None = None) -> float:
        """Gateway acceptance (HTTP 200) points/s over the condition's segments together."""
        runs = self._runs(cond, rnd)
        return sum(h.points_acked for h in runs) / sum(h.acked_s for h in runs)

    @property
    def ratio(self) -> float:
        return self.rate("defined") / self.rate("none")

    @property
    def acked_ratio(self) -> float:
        return self.acked_rate("defined") / self.acked_rate("none")

    def round_ratios(self, which: str) -> list[float]:
        """The ratio of each round alone: how far apart they are is the measurement's noise."""
        rate = self.rate if which == "rate" else self.acked_rate
        return [rate("defined", r) / rate("none", r) for r in sorted({r for r, _, _ in self.segments})]


# Segments of one round: drift during the round (a growing table, other jobs) falls on both conditions
# alike. Odd rounds run the mirror image (BAAB), so the first segment is not always the same condition.
ABBA = ("none", "defined", "defined", "none")
BAAB = ("defined", "none", "none", "defined")


def round_order(rnd: int) -> tuple[str, ...]:
    return ABBA if rnd % 2 == 0 else BAAB


def names_for(cond: str, n: int) -> list[str]:
    return defined_names(n) if cond == "defined" else undefined_names(n)


async def validation_cost(js: JetStreamContext, n: int, timeout_s: float = 10.0, repeats: int = 15) -> dict[str, float]:
    """The gateway's per-batch work (decode the body, check_points with the definitions cache), in this process.

    The cache is the product's own, fed from the EVENTS stream like the gateway's. Best of ``repeats``
    rounds of 10 batches of 1000 points: CPU cost without the other processes' noise, in µs per point.
    """
    cache = DefinitionsCache(js, structlog.get_logger())
    await cache.start()
    try:
        deadline = time.perf_counter() + timeout_s
        while len(cache.definitions) < n:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"only {len(cache.definitions)} of {n} definitions arrived from the stream")
            await asyncio.sleep(0.02)
    finally:
        await cache.stop()
    decoder = msgspec.json.Decoder(BatchRequest)
    out = {}
    for cond in ("none", "defined"):
        body = batch_body(PointMaker(hour_ago(), 1000, seed=7, metrics=names_for(cond, n)).points(1000))
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                checked = check_points(decoder.decode(body).data_points, "data_points", cache.check, body)
            best = min(best, time.perf_counter() - t0)
            if checked.errors:
                raise RuntimeError(f"{cond}: {len(checked.errors)} points rejected: {checked.errors[0]}")
        out[cond] = 1e6 * best / 10_000
    return out


GetResult = LatencyResult  # same measurement, GET instead of POST


async def run_get_latency(
    client: Poster, names: Sequence[str], *, requests: int, concurrency: int, warmup: int = 200
) -> GetResult:
    """GET /api/v1/telemetry/metrics/{name} from ``concurrency`` closed-loop clients, cycling over ``names``."""
    latencies: list[float] = []

    async def one(c: int, count: int, record: bool) -> None:
        for k in range(count):
            name = names[(c + k * concurrency) % len(names)]
            t = time.perf_counter()
            status, data = await client.get(f"{METRICS_PATH}/{name}")
            if record:
                latencies.append(time.perf_counter() - t)
            if status != 200 or _decoder.decode(data).get("name") != name:
                raise RuntimeError(f"GET metric {name}: HTTP {status}: {data[:300]!r}")

    per_client = -(-requests // concurrency)
    await asyncio.gather(*(one(c, -(-warmup // concurrency), False) for c in range(concurrency)))
    t0 = time.perf_counter()
    await asyncio.gather(*(one(c, per_client, True) for c in range(concurrency)))
    return GetResult(len(latencies), concurrency, time.perf_counter() - t0, latencies)
