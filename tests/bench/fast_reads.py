"""/latest and /query with the fast path (gateway/fast_reads.py) against the same gateway without it, in one run.

`python -m tests.bench.fast_reads` (part of `make bench`) writes docs/benchmarks-fast-reads.md. Two gateway
processes of this tree on the same servers and workers, one with TELEMETRY_FAST_READS=off (the baseline), each
on its own port; rounds alternate between them (the machine's load drifts), and each round measures q1 (latest
value of one series, answered from the latest-value cache) and q2 (POST /query: one series over 24 h in 1 h
buckets, from the hourly rollup) sequentially and at 50 concurrent clients, plus the gateway's CPU per request
(from /proc, user + system). Medians over rounds; ratios fast / baseline.
"""

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


def q2_body() -> bytes:
    """POST /query as the peers harness's q2 sends it: one series over 24 h in 1 h buckets (the hourly rollup)."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return json.dumps({"devices": [DEVICE], "metrics": [METRIC], "start_time": (end - timedelta(hours=24)).isoformat(),
                       "end_time": end.isoformat(), "aggregation": "avg", "interval": 3600}).encode()  # fmt: skip


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
    body = q2_body()
    out: Figures = {}
    try:
        for name, seq_call, conc_call in (
            ("q1", lambda: seq_client.get(Q1), lambda: conc_client.get(Q1)),
            ("q2", lambda: seq_client.post(QUERY, body), lambda: conc_client.post(QUERY, body)),
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


def report(base: Figures, fast: Figures, rounds: int, load: float) -> str:
    lines = [
        "# /latest and /query fast path: the same gateway with and without it",
        "",
        f"Written by `python -m tests.bench.fast_reads` (part of `make bench`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average before the run "
        f"{load:.1f}. Two gateway processes of this tree on the same servers and workers, one started with "
        "`TELEMETRY_FAST_READS=off` (the baseline: every request through Litestar's routing, parameters, "
        "dependencies and response objects); q1 = latest value of one series, answered from the latest-value "
        "cache; q2 = POST /query, one series over 24 h in 1 h buckets (the hourly rollup), as the peers harness "
        f"sends it; the benchmark's raw keep-alive client; {rounds} rounds alternating between the two, medians. "
        "CPU is the gateway process's user + system time per request.",
        "",
        "| figure | Litestar route (baseline) | fast path | fast / baseline |",
        "|---|---|---|---|",
    ]
    for key in base:
        lines.append(f"| {key} | {base[key]:,.2f} | {fast[key]:,.2f} | {fast[key] / base[key]:.2f}x |")
    lines += [
        "",
        "The fast path answers only plainly valid requests with credentials that may read (everything else goes "
        "to the Litestar route, so errors are the route's own); `tests/e2e/test_fast_reads.py` checks that both "
        "ways give the same status, body and headers.",
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
        base = Stack(stack.servers, stack.log_dir, port=free_port(), extra_env={"TELEMETRY_FAST_READS": "off"})
        base.start_all(("gateway",))
        try:
            pids = {"fast": stack.procs["gateway"].pid, "base": base.procs["gateway"].pid}
            urls = {"fast": stack.url, "base": base.url}
            results: dict[str, list[Figures]] = {"base": [], "fast": []}
            for i in range(rounds):
                for name in ("base", "fast") if i % 2 == 0 else ("fast", "base"):
                    figures = asyncio.run(_round(urls[name], stack.headers, pids[name], seq_n, per_client))
                    results[name].append(figures)
                    say(f"round {i + 1} {name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()))
        finally:
            base.stop_all()
        DOC.write_text(report(_median(results["base"]), _median(results["fast"]), rounds, load))
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
