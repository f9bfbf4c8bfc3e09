"""/latest and /query: the Litestar route, the fast path (gateway/fast_reads.py) and the query cache, in one run.

`python -m tests.bench.fast_reads` (part of `make bench`) writes docs/benchmarks-fast-reads.md. Three gateway
processes of this tree on the same servers and workers, each on its own port: "route" (TELEMETRY_FAST_READS=off and
no query cache: every request through Litestar's routing, parameters, dependencies and response objects), "fast"
(the fast path, no query cache) and "cached" (the defaults: the fast path and the query cache,
gateway/query_cache.py). Rounds alternate between them (the machine's load drifts); each round measures q1 (latest
value of one series, answered from the latest-value cache), q2 (POST /query: one series over 24 h in 1 h buckets,
from the hourly rollup, as the peers harness sends it) and q2 rotating over 100 series, sequentially and at 50
concurrent clients, plus the gateway's CPU per request (from /proc, user + system). Medians over rounds.
"""

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil

from telemetry_core.embedded import free_port
from tests.bench.bench_stack import bench_stack
from tests.bench.client import make_client
from tests.bench.config import env_int
from tests.bench.gateway_headroom import DEVICE, METRIC, Q1, pct, seed
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-fast-reads.md"
Figures = dict[str, float]
Call = Callable[[], Awaitable[tuple[int, bytes]]]
QUERY = "/api/v1/telemetry/query"


def say(message: str) -> None:
    print(f"[fast-reads] {message}", flush=True)


ROTATED = [f"fr-dev-{i:03d}" for i in range(100)]


def q2_body(device: str = DEVICE) -> bytes:
    """POST /query as the peers harness's q2 sends it: one series over 24 h in 1 h buckets (the hourly rollup)."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return json.dumps({"devices": [device], "metrics": [METRIC], "start_time": (end - timedelta(hours=24)).isoformat(),
                       "end_time": end.isoformat(), "aggregation": "avg", "interval": 3600}).encode()  # fmt: skip


def seed_rotated(stack: Stack) -> None:
    """24 hourly points of each ROTATED series; wait until every series' rollup answers all 24."""
    now = datetime.now(UTC).replace(microsecond=0)
    points = [{"timestamp": (now - timedelta(hours=h)).isoformat(), "metric_name": METRIC, "value": float(h)}
              for h in range(24)]  # fmt: skip
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=15) as c:
        for device in ROTATED:
            r = c.post(f"/api/v1/telemetry/devices/{device}/telemetry/batch", json={"data_points": points})
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        waiting = list(ROTATED)
        while waiting and time.monotonic() < deadline:
            r = c.post(QUERY, content=q2_body(waiting[-1]), headers={"content-type": "application/json"})
            if r.status_code == 200 and r.json()["count"] >= 24:
                waiting.pop()
            else:
                time.sleep(0.2)
    if waiting:
        raise RuntimeError(f"{len(waiting)} seeded series not queryable within 60 s")


class Rotating:
    """Hands out the q2 bodies of the ROTATED series in turn (one counter for all clients)."""

    def __init__(self) -> None:
        self.bodies, self.i = [q2_body(d) for d in ROTATED], 0

    def next(self) -> bytes:
        self.i += 1
        return self.bodies[self.i % len(self.bodies)]


async def _timed(call: Call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status, body = await call()
        out.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"{status} {body[:200]!r}")
    return out


async def _parallel(call: Call, clients: int, per_client: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    parts = await asyncio.gather(*(_timed(call, per_client) for _ in range(clients)))
    lat = [x for part in parts for x in part]
    return len(lat) / (time.perf_counter() - t0), lat


async def _round(url: str, headers: dict[str, str], pid: int, seq_n: int, per_client: int) -> Figures:
    proc = psutil.Process(pid)
    cpu = lambda: sum(proc.cpu_times()[:2])  # noqa: E731
    seq_client, conc_client = make_client("raw", url, headers, 1), make_client("raw", url, headers, 50)
    body, rotating = q2_body(), Rotating()
    out: Figures = {}
    try:
        for name, seq_call, conc_call in (
            ("q1", lambda: seq_client.get(Q1), lambda: conc_client.get(Q1)),
            ("q2", lambda: seq_client.post(QUERY, body), lambda: conc_client.post(QUERY, body)),
            (
                "q2 over 100 series",
                lambda: seq_client.post(QUERY, rotating.next()),
                lambda: conc_client.post(QUERY, rotating.next()),
            ),
        ):
            await _timed(seq_call, 100)  # warm-up
            before = cpu()
            lat = await _timed(seq_call, seq_n)
            out[f"{name} seq CPU µs/req"] = (cpu() - before) / seq_n * 1e6
            out[f"{name} seq p50 ms"], out[f"{name} seq p99 ms"] = pct(lat, 0.5), pct(lat, 0.99)
            await _parallel(conc_call, 50, 5)  # opens the 50 connections
            before = cpu()
            rate, lat = await _parallel(conc_call, 50, per_client)
            out[f"{name} 50 concurrent CPU µs/req"] = (cpu() - before) / (50 * per_client) * 1e6
            out[f"{name} 50 concurrent req/s"], out[f"{name} 50 concurrent p99 ms"] = rate, pct(lat, 0.99)
    finally:
        await seq_client.aclose()
        await conc_client.aclose()
    return out


def _median(rounds: list[Figures]) -> Figures:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


CONFIGS: dict[str, dict[str, str]] = {
    "route": {"TELEMETRY_FAST_READS": "off", "TELEMETRY_QUERY_CACHE_SIZE": "0"},
    "fast": {"TELEMETRY_QUERY_CACHE_SIZE": "0"},
    "cached": {},  # the defaults
}


def report(figures: dict[str, Figures], rounds: int, load: float) -> str:
    route, fast, cached = figures["route"], figures["fast"], figures["cached"]
    lines = [
        "# /latest and /query: the Litestar route, the fast path and the query cache",
        "",
        f"Written by `python -m tests.bench.fast_reads` (part of `make bench`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average before the run "
        f"{load:.1f}. Three gateway processes of this tree on the same servers and workers: **route** "
        "(`TELEMETRY_FAST_READS=off`, `TELEMETRY_QUERY_CACHE_SIZE=0`: every request through Litestar's routing, "
        "parameters, dependencies and response objects), **fast** (the fast path of gateway/fast_reads.py, no query "
        "cache) and **cached** (the defaults: the fast path and the query cache of gateway/query_cache.py). q1 = "
        "latest value of one series, answered from the latest-value cache; q2 = POST /query, one series over 24 h in "
        '1 h buckets (the hourly rollup), as the peers harness sends it; "q2 over 100 series" = the same query '
        "rotating over 100 seeded series (a dashboard's panels). The benchmark's raw keep-alive client; "
        f"{rounds} rounds alternating between the three, medians. CPU is the gateway process's user + system time "
        "per request. Nothing is written during the measurement, so a cached answer stays valid: this is the "
        "cache's best case, a dashboard's steady state; a notice for a series drops its answers (docs/architecture.md "
        '"Query cache").',
        "",
        "| figure | route | fast | cached | fast / route | cached / fast |",
        "|---|---|---|---|---|---|",
    ]
    for key in route:
        lines.append(
            f"| {key} | {route[key]:,.2f} | {fast[key]:,.2f} | {cached[key]:,.2f} | {fast[key] / route[key]:.2f}x "
            f"| {cached[key] / fast[key]:.2f}x |"
        )
    lines += [
        "",
        "The fast path answers only plainly valid requests with credentials that may read (everything else goes "
        "to the Litestar route, so errors are the route's own); `tests/e2e/test_fast_reads.py` checks that both "
        'ways give the same status, body and headers. q1 does not use the query cache (its "cached" column '
        "is the fast path again: a measure of the noise).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    rounds, seq_n, per_client = (
        env_int("BENCH_FR_ROUNDS", 3),
        env_int("BENCH_FR_SEQ", 1500),
        env_int("BENCH_FR_CONC", 60),
    )
    with bench_stack("telemetry-fast-reads-") as (_, _servers, stack):
        load = os.getloadavg()[0]
        stack.start_all()
        seed(stack)
        seed_rotated(stack)
        others = {
            name: Stack(stack.servers, stack.log_dir, port=free_port(), extra_env=env, suite_settings=False)
            for name, env in CONFIGS.items()
            if env
        }
        for other in others.values():
            other.start_all(("gateway",))
        try:
            pids = {name: other.procs["gateway"].pid for name, other in others.items()}
            urls = {name: other.url for name, other in others.items()}
            pids["cached"], urls["cached"] = stack.procs["gateway"].pid, stack.url
            results: dict[str, list[Figures]] = {name: [] for name in CONFIGS}
            order = list(CONFIGS)
            for i in range(rounds):
                for name in order if i % 2 == 0 else order[::-1]:
                    figures = asyncio.run(_round(urls[name], stack.headers, pids[name], seq_n, per_client))
                    results[name].append(figures)
                    say(f"round {i + 1} {name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()))
        finally:
            for other in others.values():
                other.stop_all()
        DOC.write_text(report({name: _median(r) for name, r in results.items()}, rounds, load))
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
