"""/latest with the fast path (gateway/fast_latest.py) against the same gateway without it, in one run.

`python -m tests.bench.fast_latest` (part of `make bench`) writes docs/benchmarks-fast-latest.md. Two gateway
processes of this tree on the same servers and workers, one with TELEMETRY_FAST_LATEST=off (the baseline), each
on its own port; rounds alternate between them (the machine's load drifts), and each round measures q1 (latest
value of one series, answered from the latest-value cache) sequentially and at 50 concurrent clients, plus the
gateway's CPU per request (from /proc, user + system). Medians over rounds; ratios fast / baseline.
"""

import asyncio
import os
import statistics
import time
from pathlib import Path

import psutil

from telemetry_core.embedded import free_port
from tests.bench.bench_stack import bench_stack
from tests.bench.client import make_client
from tests.bench.config import env_int
from tests.bench.gateway_headroom import Q1, _concurrent, _sequential, pct, seed
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-fast-latest.md"
Figures = dict[str, float]


def say(message: str) -> None:
    print(f"[fast-latest] {message}", flush=True)


async def _round(url: str, headers: dict[str, str], pid: int, seq_n: int, per_client: int) -> Figures:
    proc = psutil.Process(pid)
    seq_client, conc_client = make_client("raw", url, headers, 1), make_client("raw", url, headers, 50)
    try:
        await _sequential(seq_client, Q1, 100)  # warm-up
        cpu, n = sum(proc.cpu_times()[:2]), seq_n
        lat = await _sequential(seq_client, Q1, seq_n)
        seq_cpu = (sum(proc.cpu_times()[:2]) - cpu) / n * 1e6
        await _concurrent(conc_client, Q1, 50, 5)  # opens the 50 connections
        cpu = sum(proc.cpu_times()[:2])
        rate, conc_lat = await _concurrent(conc_client, Q1, 50, per_client)
        conc_cpu = (sum(proc.cpu_times()[:2]) - cpu) / (50 * per_client) * 1e6
    finally:
        await seq_client.aclose()
        await conc_client.aclose()
    return {"seq p50 ms": pct(lat, 0.5), "seq p99 ms": pct(lat, 0.99), "seq CPU µs/req": seq_cpu,
            "50 concurrent req/s": rate, "50 concurrent p99 ms": pct(conc_lat, 0.99),
            "50 concurrent CPU µs/req": conc_cpu}  # fmt: skip


def _median(rounds: list[Figures]) -> Figures:
    return {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}


def report(base: Figures, fast: Figures, rounds: int, load: float) -> str:
    lines = [
        "# /latest fast path: the same gateway with and without it",
        "",
        f"Written by `python -m tests.bench.fast_latest` (part of `make bench`) on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average before the run "
        f"{load:.1f}. Two gateway processes of this tree on the same servers and workers, one started with "
        "`TELEMETRY_FAST_LATEST=off` (the baseline: every request through Litestar's routing, parameters, "
        "dependencies and response objects); q1 = latest value of one series, answered from the latest-value "
        f"cache; the benchmark's raw keep-alive client; {rounds} rounds alternating between the two, medians. "
        "CPU is the gateway process's user + system time per request.",
        "",
        "| figure | Litestar route (baseline) | fast path | fast / baseline |",
        "|---|---|---|---|",
    ]
    for key in base:
        lines.append(f"| q1 {key} | {base[key]:,.2f} | {fast[key]:,.2f} | {fast[key] / base[key]:.2f}x |")
    lines += [
        "",
        "The fast path answers only plainly valid requests with credentials that may read (everything else goes "
        "to the Litestar route, so errors are the route's own); `tests/e2e/test_fast_latest.py` checks that both "
        "ways give the same status, body and headers.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    rounds, seq_n, per_client = (
        env_int("BENCH_FL_ROUNDS", 3),
        env_int("BENCH_FL_SEQ", 1500),
        env_int("BENCH_FL_CONC", 60),
    )
    with bench_stack("telemetry-fast-latest-") as (_, _servers, stack):
        load = os.getloadavg()[0]
        stack.start_all()
        seed(stack)
        base = Stack(stack.servers, stack.log_dir, port=free_port(), extra_env={"TELEMETRY_FAST_LATEST": "off"})
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
