"""Per-request cost and headroom of the gateway: one process against N on one port (SO_REUSEPORT), one run.

`python -m tests.bench.gateway_headroom` (part of `make bench`) writes docs/benchmarks-gateway.md:

* q1 (latest value of one series) and q2 (one series over 24 h in 1 h buckets, from the hourly rollup):
  sequential p50/p99, then 50 concurrent closed-loop clients (req/s, p99);
* single-point POST at 16 concurrent clients (p50/p99, req/s);

each with 1 gateway process (the baseline) and with N = BENCH_GATEWAY_PROCESSES (default: cores), against the
same servers and workers; figures are reported as ratios to the baseline. BENCH_GATEWAY_PROFILE=1 also runs
the single gateway under cProfile during sequential q1/q2 and lists where its CPU goes. Then the in-process
request-path probe (tests/bench/request_path.py: CPU per request and µs per section of POST, q1, q2).

BENCH_BASE_TREE=<checkout of an older commit> (e.g. `git worktree add --detach /tmp/base main`) adds a before /
after comparison in the same run: that tree's gateway (HTTP figures, one process) and its request path
(in-process probe, alternating with this tree's); BENCH_BASE_NAME names it in the document.
"""

import asyncio
import json
import os
import pstats
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from gateway.views.latest import latest_value
from telemetry_core.pg_pool import make_pool
from tests.bench.bench_stack import bench_stack
from tests.bench.client import Poster, make_client
from tests.bench.config import env_int
from tests.bench.latency import run_latency
from tests.support.stack import Stack, tree_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-gateway.md"
DEVICE, METRIC = "bench-gw-dev", "temperature"
Q1 = f"/api/v1/telemetry/devices/{DEVICE}/metrics/{METRIC}/latest"


def say(message: str) -> None:
    print(f"[gateway-bench] {message}", flush=True)


def q2_path() -> str:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=24)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (f"/api/v1/telemetry/aggregated?metric_name={METRIC}&device_id={DEVICE}&aggregation_type=avg"
            f"&interval=3600&start_time={start:{fmt}}&end_time={end:{fmt}}")  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass
class Figures:
    """One configuration's results (milliseconds, requests per second)."""

    seq: dict[str, tuple[float, float]]  # query -> (p50, p99)
    conc: dict[str, tuple[float, float]]  # query -> (req/s, p99)
    post: tuple[float, float, float]  # p50, p99, req/s


async def _sequential(client: Poster, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        status, body = await client.get(path)
        out.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    return out


async def _concurrent(client: Poster, path: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    lat: list[float] = []

    async def one() -> None:
        for _ in range(per_client):
            t = time.perf_counter()
            status, body = await client.get(path)
            lat.append(time.perf_counter() - t)
            if status != 200:
                raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return len(lat) / (time.perf_counter() - t0), lat


async def measure(stack: Stack, seq_n: int, conc_per_client: int, posts: int) -> Figures:
    seq_client = make_client("raw", stack.url, stack.headers, 1)
    conc_client = make_client("raw", stack.url, stack.headers, 50)
    post_client = make_client("raw", stack.url, stack.headers, 16)
    try:
        seq, conc = {}, {}
        for name, path in (("q1", Q1), ("q2", q2_path())):
            await _sequential(seq_client, path, 200)  # warm-up
            lat = await _sequential(seq_client, path, seq_n)
            seq[name] = (pct(lat, 0.5), pct(lat, 0.99))
            await _concurrent(conc_client, path, 50, 10)  # warm-up: opens the 50 connections
            rate, lat = await _concurrent(conc_client, path, 50, conc_per_client)
            conc[name] = (rate, pct(lat, 0.99))
            say(f"{name}: sequential p50 {seq[name][0]:.2f} ms p99 {seq[name][1]:.2f} ms; "
                f"50 concurrent {rate:,.0f} req/s p99 {conc[name][1]:.1f} ms")  # fmt: skip
        single = await run_latency(post_client, requests=posts, concurrency=16)
        post = (pct(single.latencies, 0.5), pct(single.latencies, 0.99), single.rps)
        say(f"single POST at 16: p50 {post[0]:.2f} ms p99 {post[1]:.2f} ms {post[2]:,.0f} req/s")
        return Figures(seq, conc, post)
    finally:
        for c in (seq_client, conc_client, post_client):
            await c.aclose()


def seed(stack: Stack) -> None:
    """24 hourly points of the q1/q2 series; wait until the latest value and the rollup answer."""
    now = datetime.now(UTC).replace(microsecond=0)
    points = [{"timestamp": (now - timedelta(hours=h)).isoformat(), "metric_name": METRIC, "value": float(h)}
              for h in range(24)]  # fmt: skip
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=15) as c:
        r = c.post(f"/api/v1/telemetry/devices/{DEVICE}/telemetry/batch", json={"data_points": points})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            q1, q2 = c.get(Q1), c.get(q2_path())
            if q1.status_code == 200 and q2.status_code == 200 and q2.json()["count"] >= 24:
                return
            time.sleep(0.2)
    raise RuntimeError("seeded series not queryable within 60 s")


def start_gateways(stack: Stack, count: int, **env: str) -> None:
    for i in range(count):
        stack.start("gateway", label=f"gateway-{i}", TELEMETRY_GATEWAY_REUSE_PORT="on", **env)
    stack.wait_healthy(timeout=300)  # a shared, loaded machine can take minutes to start a Python process


def start_base_gateway(stack: Stack, tree: Path) -> None:
    """One gateway running the code of ``tree``: its own directory as cwd, so `-m` cannot import this one's."""
    log = (stack.log_dir / "gateway-base.log").open("ab")
    stack.procs["gateway-base"] = subprocess.Popen(
        [sys.executable, "-m", "telemetry_core.cli", "gateway"],
        env={**stack.env(), **tree_env(tree), "TELEMETRY_GATEWAY_REUSE_PORT": "on"}, cwd=tree, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    stack.wait_healthy(timeout=300)


def request_path(stack: Stack, base: Path | None, n: int, rounds: int) -> dict[str, dict[str, dict[str, Any]]]:
    """tests/bench/request_path.py in a child per build (this tree, and ``base``), alternating; per build and kind
    the median over rounds of the CPU figures and of each section."""
    builds = {"now": Path(__file__).resolve().parents[2]} | ({"before": base} if base else {})
    probe = str(Path(__file__).with_name("request_path.py"))
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name in builds}
    for _ in range(rounds):
        for name, tree in builds.items():
            # -P and run_path: nothing of the current directory or of this file's directory on sys.path.
            code = f"import runpy; runpy.run_path({probe!r}, run_name='__main__')"
            out = subprocess.run([sys.executable, "-P", "-c", code, str(n)], env={**stack.env(), **tree_env(tree)},
                                 cwd=tree, capture_output=True, text=True, timeout=1800, check=True)  # fmt: skip
            runs[name].append({d["kind"]: d for d in map(json.loads, out.stdout.splitlines())})
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for name, found in runs.items():
        result[name] = {}
        for kind in found[0]:
            per = [f[kind] for f in found]
            sections = {k: statistics.median(p["sections"][k] for p in per) for k in per[0]["sections"]}
            result[name][kind] = {
                "cpu_us": statistics.median(p["cpu_us"] for p in per),
                "cpu_min_us": min(p["cpu_min_us"] for p in per),
                "wall_p50_us": statistics.median(p["wall_p50_us"] for p in per),
                "sections": sections,
            }
    return result


def stop_gateways(stack: Stack) -> None:
    for label in [name for name in stack.procs if name.startswith("gateway")]:
        proc = stack.procs.pop(label)
        proc.terminate()
        proc.wait(15)


# CPU time, so the loop's idle waits do not count; the whole life of the process (start-up included: it shows
# as import and compile functions, outside the request path). Enabling a profiler from a signal handler
# hung the uvloop loop, so no narrower window.
_PROFILED = """
import cProfile, time
from gateway.main import main
profiler = cProfile.Profile(time.process_time)
try:
    profiler.runcall(main)
finally:  # uvicorn re-raises the SIGINT it stopped on
    profiler.dump_stats({out!r})
"""


def profile_single(stack: Stack, out: Path, seq_n: int) -> list[str]:
    """One gateway under cProfile (CPU time) during sequential q1 and q2 only; its top functions per request."""
    env = {**stack.env(), "TELEMETRY_GATEWAY_REUSE_PORT": "on"}
    log = (stack.log_dir / "gateway-profile.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-c", _PROFILED.format(out=str(out))], env=env, stdout=log, stderr=log)
    log.close()
    stack.procs["gateway-profile"] = proc
    try:
        stack.wait_healthy(timeout=300)

        async def load() -> None:
            client = make_client("raw", stack.url, stack.headers, 1)
            try:
                for path in (Q1, q2_path()):
                    await _sequential(client, path, seq_n)
            finally:
                await client.aclose()

        asyncio.run(load())
    finally:
        stack.procs.pop("gateway-profile")
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    stats = pstats.Stats(str(out))
    rows = []
    for (file, line, func), (_cc, _calls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, f"{'/'.join(Path(file).parts[-2:])}:{line} {func}"))
    requests = 2 * seq_n
    total = sum(r[0] for r in rows)
    head = [f"CPU per request (q1 and q2 together, under the profiler): {total / requests * 1e6:.0f} µs", "",
            "by own time:"]  # fmt: skip
    own = [f"{tt / requests * 1e6:7.1f} µs own {ct / requests * 1e6:7.1f} µs cumulative  {name}"
           for tt, ct, name in sorted(rows, reverse=True)[:25]]  # fmt: skip
    ours = [(ct, tt, name) for tt, ct, name in rows if name.startswith(("gateway/", "views/", "routes/", "auth/"))]
    cum = [f"{ct / requests * 1e6:7.1f} µs cumulative  {name}" for ct, tt, name in sorted(ours, reverse=True)[:20]]
    return [*head, *own, "", "project functions by cumulative time:", *cum]


async def checkout_cost(database_url: str, n: int) -> dict[str, tuple[float, float]]:
    """q1's database part (pool checkout + the SELECT) with the read pool in autocommit (as the gateway now
    runs it) and in a transaction (BEGIN and COMMIT round trips, as before): p50/p99 ms, alternating."""
    since = datetime.now(UTC) - timedelta(days=1)
    pools = {"autocommit (now)": make_pool(database_url, max_size=2, autocommit=True),
             "transaction (before)": make_pool(database_url, max_size=2)}  # fmt: skip
    lat: dict[str, list[float]] = {name: [] for name in pools}
    try:
        for pool in pools.values():
            await pool.open(wait=True)
        for i in range(n + 100):
            for name, pool in pools.items():
                t = time.perf_counter()
                found = await latest_value(pool, DEVICE, METRIC, since)
                if i >= 100:  # the first 100: warm-up (prepared statements)
                    lat[name].append(time.perf_counter() - t)
                assert found is not None
    finally:
        for pool in pools.values():
            await pool.close()
    return {name: (pct(v, 0.5), pct(v, 0.99)) for name, v in lat.items()}


_KIND_NAMES = {"post": "POST one point", "q1": "q1 latest value", "q2": "q2 24 h in 1 h buckets"}


def before_after_http(before: Figures, now: Figures) -> str:
    """The HTTP figures of the base tree's gateway against this tree's, one process each."""

    def row(label: str, a: float, b: float, unit: str) -> str:
        return f"| {label} | {a:,.2f} {unit} | {b:,.2f} {unit} | {b / a:.2f}x |"

    rows = ["| figure (1 gateway process) | before | now | now / before |", "|---|---|---|---|"]
    for q in ("q1", "q2"):
        rows.append(row(f"{q} sequential p50", before.seq[q][0], now.seq[q][0], "ms"))
        rows.append(row(f"{q} sequential p99", before.seq[q][1], now.seq[q][1], "ms"))
        rows.append(row(f"{q} at 50 concurrent", before.conc[q][0], now.conc[q][0], "req/s"))
        rows.append(row(f"{q} at 50 concurrent p99", before.conc[q][1], now.conc[q][1], "ms"))
    rows.append(row("single POST at 16 p50", before.post[0], now.post[0], "ms"))
    rows.append(row("single POST at 16 p99", before.post[1], now.post[1], "ms"))
    rows.append(row("single POST at 16", before.post[2], now.post[2], "req/s"))
    return "\n".join(rows) + "\n"


def request_path_tables(paths: dict[str, dict[str, dict[str, Any]]]) -> str:
    """CPU per request and µs per section, per kind, for each build the probe ran (tests/bench/request_path.py)."""
    builds = [b for b in ("before", "now") if b in paths]
    head = "| request | " + " | ".join(f"{b}: CPU median / fastest block, wall p50" for b in builds)
    rows = [head + (" | now / before (median CPU) |" if len(builds) == 2 else " |"),
            "|---|" + "---|" * (len(builds) + (len(builds) == 2))]  # fmt: skip
    for kind, name in _KIND_NAMES.items():
        cells = [f"{paths[b][kind]['cpu_us']:.0f} / {paths[b][kind]['cpu_min_us']:.0f} µs, "
                 f"{paths[b][kind]['wall_p50_us']:.0f} µs" for b in builds]  # fmt: skip
        if len(builds) == 2:
            cells.append(f"{paths['now'][kind]['cpu_us'] / paths['before'][kind]['cpu_us']:.2f}x")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(rows) + "\n\n"
    sections = list(paths["now"]["q1"]["sections"])
    cols = [f"{name.split(' ')[0]} {b}" for name in _KIND_NAMES.values() for b in builds]
    text += "| section (µs per request under cProfile) | " + " | ".join(cols) + " |\n"
    text += "|---|" + "---|" * len(cols) + "\n"
    for section in sections:
        vals = [f"{paths[b][kind]['sections'][section]:.0f}" for kind in _KIND_NAMES for b in builds]
        text += f"| {section} | " + " | ".join(vals) + " |\n"
    return text


def report(
    base: Figures, many: Figures, copies: int, profile: list[str], load: float, checkout: dict[str, tuple[float, float]],
    paths: dict[str, dict[str, dict[str, Any]]], before: Figures | None = None, base_name: str = "",
) -> str:  # fmt: skip
    def row(label: str, a: float, b: float, unit: str) -> str:
        return f"| {label} | {a:,.2f} {unit} | {b:,.2f} {unit} | {b / a:.2f}x |"

    rows = [
        "| figure | 1 process (baseline) | " + f"{copies} processes | ratio |",
        "|---|---|---|---|",
    ]
    for q in ("q1", "q2"):
        rows.append(row(f"{q} sequential p50", base.seq[q][0], many.seq[q][0], "ms"))
        rows.append(row(f"{q} sequential p99", base.seq[q][1], many.seq[q][1], "ms"))
        rows.append(row(f"{q} at 50 concurrent", base.conc[q][0], many.conc[q][0], "req/s"))
        rows.append(row(f"{q} at 50 concurrent p99", base.conc[q][1], many.conc[q][1], "ms"))
    rows.append(row("single POST at 16 p50", base.post[0], many.post[0], "ms"))
    rows.append(row("single POST at 16 p99", base.post[1], many.post[1], "ms"))
    rows.append(row("single POST at 16", base.post[2], many.post[2], "req/s"))
    text = (
        "# Gateway headroom benchmark\n\n"
        f"Written by `python -m tests.bench.gateway_headroom` (part of `make bench`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load average before the run {load:.1f}. "
        "The same servers and workers serve both configurations; the client is the benchmark's raw keep-alive "
        "HTTP/1.1 client in one process (it shares the machine's cores with the gateways). q1: latest value of "
        "one series; q2: one series over 24 h in 1 h buckets (hourly rollup); POST: one point per request, "
        "16 closed-loop clients each on its own device. Targets (issue 13): sequential q1 p50 < 0.5 ms, "
        "single POST p99 < 10 ms at 16.\n\n" + "\n".join(rows) + "\n"
    )
    (now_p50, now_p99), (before_p50, before_p99) = checkout["autocommit (now)"], checkout["transaction (before)"]
    text += (
        "\n## The per-request cut: q1's database part, autocommit against a transaction (same run, alternating)\n\n"
        "Pool checkout + the latest-value SELECT, from this benchmark's process: the gateway's read pool now runs "
        "in autocommit; before, every checkout cost a BEGIN and a COMMIT round trip around the one SELECT.\n\n"
        "| read pool | p50 | p99 |\n|---|---|---|\n"
        f"| transaction (before) | {before_p50:.3f} ms | {before_p99:.3f} ms |\n"
        f"| autocommit (now) | {now_p50:.3f} ms | {now_p99:.3f} ms |\n"
        f"| ratio now / before | {now_p50 / before_p50:.2f}x | {now_p99 / before_p99:.2f}x |\n"
    )
    text += (
        "\n## The request path in-process (tests/bench/request_path.py)\n\n"
        "The real app (create_app and its lifespan: NATS, the read pool, the caches) called as an ASGI app in one "
        "process, one request at a time: no socket, no HTTP parser, no client. CPU is the process's CPU time per "
        "request (asyncio, psycopg and the NATS client included) over blocks of 50 requests: the median block "
        "and the fastest. Sections are cumulative µs per request under cProfile (which inflates Python code "
        "3-5x: compare a section with itself across builds, not with the CPU column). Builds alternate, "
        "several rounds, medians over rounds"
        + (f"; before = {base_name}" if before is not None else "")
        + ".\n\n"
        + request_path_tables(paths)
    )
    if before is not None:
        text += (
            f"\n## Before / after: the gateway of {base_name} against this one (same servers, same run)\n\n"
            "One gateway process each, run one after the other (before first), with the client above.\n\n"
            + before_after_http(before, base)
        )
    if profile:
        text += ("\n## Where one gateway's CPU goes (cProfile, sequential q1 then q2)\n\n"
                 "Top functions by own time; the µs figure is cumulative time per request under the profiler "
                 "(which itself slows Python code 1.5-2x).\n\n```\n" + "\n".join(profile) + "\n```\n")  # fmt: skip
    text += ("\nThe machine is shared (2 cores, often 8+ runnable jobs): absolute figures move by 2x between "
             "sittings; the ratios within one run are what this measures. With N processes on 2 cores the "
             "client, PostgreSQL and the workers compete with the extra gateways for the same cores.\n")  # fmt: skip
    return text


def main() -> None:
    copies = env_int("BENCH_GATEWAY_PROCESSES", os.cpu_count() or 2)
    seq_n, conc_n, posts = (
        env_int("BENCH_GW_SEQ", 2000),
        env_int("BENCH_GW_CONC_PER_CLIENT", 60),
        env_int("BENCH_GW_POSTS", 4000),
    )
    with bench_stack("telemetry-gw-bench-") as (root, servers, stack):
        load = os.getloadavg()[0]
        for worker in ("ingest-worker", "projection-worker", "alert-worker"):
            stack.start(worker)
        start_gateways(stack, 1)
        seed(stack)
        if os.environ.get("BENCH_GATEWAY_PROFILE_ONLY"):  # while working on the per-request path
            stop_gateways(stack)
            print("\n".join(profile_single(stack, root / "gateway.prof", seq_n)))
            return
        base_tree = Path(os.environ["BENCH_BASE_TREE"]) if os.environ.get("BENCH_BASE_TREE") else None
        before = None
        if base_tree is not None:  # a checkout of an older commit: its gateway first, then this one
            stop_gateways(stack)
            start_base_gateway(stack, base_tree)
            before = asyncio.run(measure(stack, seq_n, conc_n, posts))
            stop_gateways(stack)
            start_gateways(stack, 1)
        base = asyncio.run(measure(stack, seq_n, conc_n, posts))
        stop_gateways(stack)
        start_gateways(stack, copies)
        many = asyncio.run(measure(stack, seq_n, conc_n, posts))
        stop_gateways(stack)
        checkout = asyncio.run(checkout_cost(servers.database_url, seq_n))
        say(f"q1 database part p50/p99 ms: {checkout}")
        profile = profile_single(stack, root / "gateway.prof", seq_n) if os.environ.get("BENCH_GATEWAY_PROFILE") else []
        paths = request_path(stack, base_tree, env_int("BENCH_RP_REQUESTS", 1000), env_int("BENCH_RP_ROUNDS", 3))
        base_name = os.environ.get("BENCH_BASE_NAME", str(base_tree))
        DOC.write_text(report(base, many, copies, profile, load, checkout, paths, before, base_name))
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
