"""q1 (latest value of one series) before and after the gateway's latest-value cache, in one run, alternated.

`python -m tests.bench.latest_cache` (part of `make bench`) writes docs/benchmarks-latest.md. One set of
servers and workers; one gateway process at a time, of three builds, in turn for BENCH_LATEST_ROUNDS rounds (each
round starting with the next build, so that neither order nor drift favours one):

* ``before``: the tree of BENCH_BASE_REF (default ``main``; extracted with ``git archive``) or BENCH_BASE_TREE;
* ``cache off``: this tree with TELEMETRY_LATEST_CACHE_SIZE=0 (the same request path without the cache);
* ``cache on``: this tree as it runs by default.

Each measures the q1 request of tests/bench/gateway_headroom.py: sequential p50/p99 over BENCH_LATEST_SEQ
requests, then 50 concurrent closed-loop clients (req/s, p99). The load average is recorded before each
measurement; the figures reported are medians over the rounds, and ratios to ``before`` of the same run.
The ``cache on`` gateway's hit/miss counters (/metrics) show the cache answered.
"""

import asyncio
import os
import re
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.bench.bench_stack import bench_stack
from tests.bench.client import make_client
from tests.bench.config import env_int
from tests.bench.gateway_headroom import (
    Q1,
    _concurrent,
    _sequential,
    pct,
    seed,
    start_base_gateway,
    start_gateways,
    stop_gateways,
)
from tests.support.stack import Stack

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "benchmarks-latest.md"
BUILDS = ("before", "cache off", "cache on")


def say(message: str) -> None:
    print(f"[latest-bench] {message}", flush=True)


def base_tree(root: Path) -> tuple[Path, str]:
    """The ``before`` build: BENCH_BASE_TREE as given, else BENCH_BASE_REF extracted from git into ``root``."""
    if os.environ.get("BENCH_BASE_TREE"):
        tree = Path(os.environ["BENCH_BASE_TREE"])
        return tree, os.environ.get("BENCH_BASE_NAME", str(tree))
    ref = os.environ.get("BENCH_BASE_REF", "main")
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    tree = root / "base"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree, f"{ref} at {commit}"


async def measure(stack: Stack, seq_n: int, per_client: int) -> dict[str, float]:
    seq_client = make_client("raw", stack.url, stack.headers, 1)
    conc_client = make_client("raw", stack.url, stack.headers, 50)
    try:
        await _sequential(seq_client, Q1, 300)  # warm-up: prepared statements, the cache's entry
        lat = await _sequential(seq_client, Q1, seq_n)
        await _concurrent(conc_client, Q1, 50, 10)  # warm-up: opens the 50 connections
        rate, conc_lat = await _concurrent(conc_client, Q1, 50, per_client)
    finally:
        await seq_client.aclose()
        await conc_client.aclose()
    return {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "rate": rate, "conc_p99": pct(conc_lat, 0.99)}


def cache_counters(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.url}/metrics", headers=stack.headers, timeout=15).text
    found = re.findall(r'^telemetry_latest_cache_answers_total\{result="(\w+)"\} ([0-9.e+]+)$', text, re.M)
    return {k: float(v) for k, v in found}


def start_build(stack: Stack, build: str, tree: Path) -> None:
    if build == "before":
        start_base_gateway(stack, tree)
    elif build == "cache off":
        stack.start("gateway", label="gateway-0", TELEMETRY_GATEWAY_REUSE_PORT="on", TELEMETRY_LATEST_CACHE_SIZE="0")
        stack.wait_healthy(timeout=300)
    else:
        start_gateways(stack, 1)


def report(runs: dict[str, list[dict[str, float]]], loads: list[float], base_name: str, counters: dict[str, float],
           seq_n: int, per_client: int) -> str:  # fmt: skip
    med = {b: {k: statistics.median(r[k] for r in runs[b]) for k in runs[b][0]} for b in BUILDS}
    before = med["before"]

    def row(label: str, key: str, unit: str, fmt: str) -> str:
        cells = [f"{med[b][key]:{fmt}} {unit}" for b in BUILDS]
        ratios = [f"{med[b][key] / before[key]:.2f}x" for b in BUILDS[1:]]
        return f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |"

    rounds = len(runs["before"])
    per_round = "\n".join(
        f"| {i + 1} | " + " | ".join(f"{runs[b][i]['p50']:.3f} / {runs[b][i]['rate']:,.0f}" for b in BUILDS) + " |"
        for i in range(rounds)
    )
    return (
        "# Latest-value cache benchmark (q1)\n\n"
        f"Written by `python -m tests.bench.latest_cache` (part of `make bench`) on {datetime.now(UTC):%Y-%m-%d %H:%M}"
        f" UTC, {os.cpu_count()} cores; load average before each measurement: "
        f"{', '.join(f'{x:.1f}' for x in loads)}. One set of servers and workers; one gateway process at a time, "
        f"the three builds in turn (each round starting with the next one), {rounds} rounds, medians over rounds. before = {base_name}; cache off = this "
        "tree with TELEMETRY_LATEST_CACHE_SIZE=0; cache on = this tree as it runs by default. q1: GET the latest "
        f"value of one series ({seq_n} sequential requests; then 50 closed-loop clients x {per_client}), with the "
        "benchmark's raw keep-alive HTTP/1.1 client in one process sharing the machine's cores. Targets (issue 13): "
        "sequential q1 p50 < 0.5 ms; q1 at 50 concurrent >= 0.6x VictoriaMetrics' throughput (`make bench-peers`).\n\n"
        "| figure (1 gateway process) | before | cache off | cache on | cache off / before | cache on / before |\n"
        "|---|---|---|---|---|---|\n"
        + "\n".join(
            [
                row("q1 sequential p50", "p50", "ms", ".3f"),
                row("q1 sequential p99", "p99", "ms", ".3f"),
                row("q1 at 50 concurrent", "rate", "req/s", ",.0f"),
                row("q1 at 50 concurrent p99", "conc_p99", "ms", ".1f"),
            ]
        )
        + "\n\nPer round, sequential p50 ms / req/s at 50:\n\n| round | "
        + " | ".join(BUILDS)
        + " |\n|---|---|---|---|\n"
        + per_round
        + f"\n\nThe cache-on gateway's answers over all its rounds (telemetry_latest_cache_answers): "
        f"{int(counters.get('hit', 0)):,} hits, {int(counters.get('miss', 0)):,} misses (a counter per process: "
        "each round's gateway starts at zero, these are the last round's).\n\n"
        "The machine is shared (2 cores, often 8+ runnable jobs): absolute figures move by 2x between sittings; "
        "the ratios within one run are what this measures.\n"
    )


def main() -> None:
    seq_n, per_client = env_int("BENCH_LATEST_SEQ", 2000), env_int("BENCH_LATEST_CONC_PER_CLIENT", 60)
    rounds = env_int("BENCH_LATEST_ROUNDS", 3)
    with bench_stack("telemetry-latest-bench-") as (root, _servers, stack):
        runs: dict[str, list[dict[str, float]]] = {b: [] for b in BUILDS}
        loads: list[float] = []
        counters: dict[str, float] = {}
        tree, base_name = base_tree(root)
        for worker in ("ingest-worker", "projection-worker", "alert-worker"):
            stack.start(worker)
        start_gateways(stack, 1)
        seed(stack)
        stop_gateways(stack)
        for i in range(rounds):
            for build in BUILDS[i % 3 :] + BUILDS[: i % 3]:  # each round starts with another build (drift, order)
                start_build(stack, build, tree)
                loads.append(os.getloadavg()[0])
                figures = asyncio.run(measure(stack, seq_n, per_client))
                if build == "cache on":
                    counters = cache_counters(stack)
                stop_gateways(stack)
                runs[build].append(figures)
                say(f"round {i + 1} {build}: p50 {figures['p50']:.3f} ms p99 {figures['p99']:.3f} ms; "
                    f"50 concurrent {figures['rate']:,.0f} req/s p99 {figures['conc_p99']:.1f} ms")  # fmt: skip
        DOC.write_text(report(runs, loads, base_name, counters, seq_n, per_client))
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
