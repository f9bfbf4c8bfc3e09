"""Time one query kind through the gateway: one request at a time, then from concurrent closed-loop clients.

Requests are built before the clock starts. Every answer is decoded and checked (HTTP 200, its ``count``
and ``source``) after its latency is taken, so a fast wrong answer fails the benchmark instead of flattering it.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from tests.bench.big_query_set import BigQuery, Request
from tests.bench.client import Poster
from tests.bench.queries import Dataset
from tests.bench.stats import percentile

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class Timed:
    """Sequential and concurrent figures of one query kind (seconds; requests per second)."""

    key: str
    seq: list[float]
    conc: list[float]
    conc_s: float
    concurrency: int
    source: str

    def seq_p(self, q: float) -> float:
        return percentile(self.seq, q)

    def conc_p(self, q: float) -> float:
        return percentile(self.conc, q)

    @property
    def rps(self) -> float:
        return len(self.conc) / self.conc_s


def check(query: BigQuery, ds: Dataset, status: int, data: bytes) -> str:
    """The answer's source; raises unless it is a 200 with the expected count and source."""
    if status != 200:
        raise RuntimeError(f"{query.key}: HTTP {status}: {data[:300]!r}")
    body: dict[str, Any] = _decoder.decode(data)
    if query.source is None:
        if "value" not in body:
            raise RuntimeError(f"{query.key}: no value in {data[:300]!r}")
        return "latest_values"
    want = query.count(ds)
    if body.get("count") != want or body.get("source") != query.source:
        raise RuntimeError(
            f"{query.key}: count {body.get('count')} source {body.get('source')}, expected {want} {query.source}"
        )
    return str(body["source"])


async def _send(client: Poster, request: Request) -> tuple[int, bytes]:
    method, path, body = request
    return await (client.post(path, body) if method == "POST" and body is not None else client.get(path))


async def time_query(
    client: Poster, ds: Dataset, query: BigQuery, *, sequential: int, concurrency: int, requests: int, max_s: float
) -> Timed:
    """``sequential`` requests one at a time, then ``requests`` from ``concurrency`` clients; none starts after max_s."""
    plan = [query.build(ds, i) for i in range(max(sequential, requests) + 2 * concurrency)]
    source = ""
    for request in plan[:3]:  # warm-up: connections, the gateway's statement cache
        source = check(query, ds, *await _send(client, request))
    seq: list[float] = []
    deadline = time.perf_counter() + max_s
    for request in plan[:sequential]:
        if time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        answer = await _send(client, request)
        seq.append(time.perf_counter() - t)
        check(query, ds, *answer)
    conc: list[float] = []
    queue = list(reversed(plan[:requests]))

    async def one() -> None:
        while queue and time.perf_counter() < deadline:
            request = queue.pop()
            t = time.perf_counter()
            answer = await _send(client, request)
            conc.append(time.perf_counter() - t)
            check(query, ds, *answer)

    t0 = time.perf_counter()
    deadline = t0 + max_s
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return Timed(query.key, seq, conc, time.perf_counter() - t0, concurrency, source)
