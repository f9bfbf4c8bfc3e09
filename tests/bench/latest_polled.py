"""A dashboard polling series that their devices write meanwhile: how often the latest-value cache answers.

`python -m tests.bench.latest_polled` (part of `make bench`) writes docs/benchmarks-latest-polled.md. One set of
servers and workers; one gateway process at a time (every poll reaches the process measured), of two builds in
turn, alternating which goes first each round:

* ``prefill off``: this tree with TELEMETRY_LATEST_PREFILL_INTERVAL=0: an entry a notice made pending is read
  again by the next poll (a miss, a PostgreSQL round trip);
* ``default``: the prefill reads a polled entry again once a notice made it pending, up to REFILLS_PER_READ (8)
  times per read, fewer for a series written more often than that between polls (gateway/latest_cache.py).

Per scenario (write interval W, poll interval P): BENCH_POLLED_DEVICES devices (200) each write one point of one
metric every W s (one bulk POST for all of them); after 3 s (every series exists) a dashboard polls each series'
GET …/latest once every P s, one request at a time, spread evenly, for BENCH_POLLED_SECONDS (20). Figures: the
polls' p50/p90/p99 and the gateway's hit ratio over them (telemetry_latest_cache_answers_total, /metrics). With
W > P the poll after each write is the one the refill turns into a hit; with W < P every poll follows a write,
which the refills answer while P < 8 W; past that the read's refills have run out and the poll misses, and the
series' refills per read fall to one (with the full budget tried again every REPROBE_AFTER polls): ~2 per poll.
"""

import asyncio
import os
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from tests.bench.bench_stack import bench_stack
from tests.bench.client import Poster, make_client
from tests.bench.config import env_int
from tests.bench.gateway_headroom import pct, start_gateways, stop_gateways
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-latest-polled.md"
BUILDS = {"prefill off": {"TELEMETRY_LATEST_PREFILL_INTERVAL": "0"}, "default": {}}
SCENARIOS = ((10.0, 2.0), (2.0, 5.0), (1.0, 10.0))  # (write every W s, poll every P s)
WARM_S = 3.0


def say(message: str) -> None:
    print(f"[latest-polled] {message}", flush=True)


async def counters(client: Poster) -> dict[str, float]:
    """The gateway's cache answers (hit, miss) and prefills (kept, not_kept) so far."""
    _, body = await client.get("/metrics")
    found = re.findall(
        rb'^telemetry_latest_cache_(?:answers|prefills)_total\{result="(\w+)"\} ([0-9.e+]+)$', body, re.M
    )
    return {k.decode(): float(v) for k, v in found}


async def write_every(client: Poster, devices: list[str], every_s: float, until: float) -> None:
    """One point per device every ``every_s`` (one bulk POST), until ``until`` (monotonic)."""
    n = 0
    while time.monotonic() < until:
        started = time.monotonic()
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = {d: [{"timestamp": now, "metric_name": "temperature", "value": float(n)}] for d in devices}
        status, text = await client.post("/api/v1/telemetry/bulk", msgspec.json.encode(body))
        if status != 200:
            raise RuntimeError(f"bulk POST answered {status}: {text[:300]!r}")
        n += 1
        await asyncio.sleep(max(0.0, every_s - (time.monotonic() - started)))


async def scenario(stack: Stack, run: str, write_s: float, poll_s: float, devices: int, seconds: float) -> dict:
    names = [f"{run}-{i:04d}" for i in range(devices)]
    writer, poller = (make_client("raw", stack.url, stack.headers, 1) for _ in range(2))
    try:
        writing = asyncio.create_task(write_every(writer, names, write_s, time.monotonic() + WARM_S + seconds + 1))
        await asyncio.sleep(WARM_S)
        before = await counters(poller)
        latencies: list[float] = []
        gap, start, i = poll_s / devices, time.monotonic(), 0
        while time.monotonic() - start < seconds:
            sent = time.perf_counter()
            status, _ = await poller.get(f"/api/v1/telemetry/devices/{names[i % devices]}/metrics/temperature/latest")
            latencies.append(time.perf_counter() - sent)
            if status != 200:
                raise RuntimeError(f"GET latest answered {status}")
            i += 1
            await asyncio.sleep(max(0.0, start + i * gap - time.monotonic()))
        after = await counters(poller)
        await writing
    finally:
        await writer.aclose()
        await poller.aclose()
    hits, misses, kept, not_kept = (after.get(k, 0.0) - before.get(k, 0.0) for k in ("hit", "miss", "kept", "not_kept"))
    return {"polls": len(latencies), "hit_ratio": hits / max(1.0, hits + misses), "p50": pct(latencies, 0.5),
            "p90": pct(latencies, 0.9), "p99": pct(latencies, 0.99), "prefills": (kept + not_kept) / len(latencies),
            "not_kept": not_kept / max(1.0, kept + not_kept)}  # fmt: skip


def report(runs: dict[tuple[float, float], dict[str, list[dict]]], loads: list[float], devices: int, seconds: float,
           rounds: int) -> str:  # fmt: skip
    lines = [
        "# Latest-value cache: a dashboard polling series written meanwhile\n",
        f"Written by `python -m tests.bench.latest_polled` (part of `make bench`) on {datetime.now(UTC):%Y-%m-%d %H:%M}"
        f" UTC, {os.cpu_count()} cores; load average before each measurement: {', '.join(f'{x:.1f}' for x in loads)}."
        f" {devices} devices write one point each every W s (one bulk POST); a dashboard polls each series' latest"
        f" value every P s, one request at a time, for {seconds:.0f} s or {POLLS_AT_LEAST} polls of each series if"
        f" longer; one gateway process; {rounds} rounds, the"
        " builds alternating which goes first, medians over rounds. `prefill off` = TELEMETRY_LATEST_PREFILL_INTERVAL=0"
        " (a pending entry is read again by the next poll); `default` = the prefill also reads again an entry a"
        " notice made pending after a poll read it, up to 8 times per read, fewer for a series written more often"
        " than that between polls (gateway/latest_cache.py).\n",
        "| W / P | build | polls | hit ratio | p50 | p90 | p99 | prefill reads per poll | of them not kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (write_s, poll_s), builds in runs.items():
        for build, results in builds.items():
            med = {k: statistics.median(r[k] for r in results) for k in results[0]}
            lines.append(
                f"| {write_s:g} s / {poll_s:g} s | {build} | {med['polls']:,.0f} | {med['hit_ratio']:.3f} | "
                f"{med['p50']:.3f} ms | {med['p90']:.3f} ms | {med['p99']:.3f} ms | {med['prefills']:.2f} | "
                f"{med['not_kept']:.1%} |"
            )
    lines.append(
        "\nPrefill reads per poll: rows the gateway's prefill read (telemetry_latest_cache_prefills_total) during the "
        "polls, per poll: each costs ~25 µs of gateway and PostgreSQL CPU in a 1,000-series statement, against "
        "~220 µs more for a miss than for a hit. Not kept: read before the projection committed the newer row "
        "(tried again two rounds later).\n\n"
        "A poll is one request on an otherwise idle connection (the scheduler's and the event loops' wake-ups "
        "are in every figure); a hit saves the PostgreSQL round trip of a miss. The machine is shared: compare "
        "the builds of one run, not runs of different sittings.\n"
    )
    return "\n".join(lines)


# Every scenario runs at least this many polls of each series (BENCH_POLLED_SECONDS or longer): a series written
# more often than its refills cover loses them over its first polls (gateway/latest_cache.py REPROBE_AFTER), so a
# run of two polls per series would show the first polls' cost, not a dashboard's steady one.
POLLS_AT_LEAST = 6


def main() -> None:
    devices, seconds = env_int("BENCH_POLLED_DEVICES", 200), float(env_int("BENCH_POLLED_SECONDS", 20))
    rounds = env_int("BENCH_POLLED_ROUNDS", 2)
    runs: dict[tuple[float, float], dict[str, list[dict]]] = {s: {b: [] for b in BUILDS} for s in SCENARIOS}
    loads: list[float] = []
    with bench_stack("telemetry-latest-polled-") as (_root, _servers, stack):
        for worker in ("ingest-worker", "projection-worker", "alert-worker"):
            stack.start(worker)
        order = list(BUILDS)
        for r in range(rounds):
            for build in order[r % 2 :] + order[: r % 2]:
                start_gateways(stack, 1, **BUILDS[build])
                for write_s, poll_s in SCENARIOS:
                    loads.append(os.getloadavg()[0])
                    run = f"poll-{r}-{build.replace(' ', '')}-{write_s:g}-{poll_s:g}"
                    # Six polls of each series at least: the refills' budget adapts over a series' first polls.
                    span = max(seconds, POLLS_AT_LEAST * poll_s)
                    figures = asyncio.run(scenario(stack, run, write_s, poll_s, devices, span))
                    runs[(write_s, poll_s)][build].append(figures)
                    say(f"round {r + 1} {build} W={write_s:g} P={poll_s:g}: hit ratio {figures['hit_ratio']:.3f}, "
                        f"p50 {figures['p50']:.3f} ms, p99 {figures['p99']:.3f} ms")  # fmt: skip
                stop_gateways(stack)
    DOC.write_text(report(runs, loads, devices, seconds, rounds))
    say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
