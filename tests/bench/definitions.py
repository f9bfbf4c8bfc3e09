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

from tests.bench.client import Poster
from tests.bench.data import VALUE_MAX, VALUE_MIN, PointMaker, hour_ago, point_body
from tests.bench.e2e import SustainedResult
from tests.bench.latency import single_path

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
    runs: dict[str, list[SustainedResult]] = field(default_factory=dict)  # "none" / "defined" → its halves

    def rate(self, cond: str) -> float:
        """Queryable points/s over the condition's halves together."""
        halves = self.runs[cond]
        return sum(h.points_acked for h in halves) / sum(h.queryable_s for h in halves)

    def acked_rate(self, cond: str) -> float:
        """Gateway acceptance (HTTP 200) points/s over the condition's halves together."""
        halves = self.runs[cond]
        return sum(h.points_acked for h in halves) / sum(h.acked_s for h in halves)

    @property
    def ratio(self) -> float:
        return self.rate("defined") / self.rate("none")

    @property
    def acked_ratio(self) -> float:
        return self.acked_rate("defined") / self.acked_rate("none")

    def spread(self, which: str) -> float:
        """Largest relative difference between two halves of the same condition: the run-to-run noise."""
        out = 0.0
        for halves in self.runs.values():
            rates = [h.rate if which == "rate" else h.acked_rate for h in halves]
            if len(rates) > 1:
                out = max(out, (max(rates) - min(rates)) / (sum(rates) / len(rates)))
        return out


# Order of the halves: drift during the phase (a growing table, other jobs) falls on both conditions alike.
ABBA = ("none", "defined", "defined", "none")


def names_for(cond: str, n: int) -> list[str]:
    return defined_names(n) if cond == "defined" else undefined_names(n)


@dataclass(frozen=True)
class GetResult:
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


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
