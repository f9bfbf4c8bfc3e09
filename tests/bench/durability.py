"""What acknowledging only fsynced points costs: HTTP ingest with JetStream sync_interval always vs the opt-out.

Two nats-servers side by side, one with ``sync_interval: always`` (the default) and one with the opt-out
(``TELEMETRY_NATS_SYNC_INTERVAL``, here nats-server's own 2 min), each behind a gateway of its own, one
PostgreSQL shared. Rounds alternate which goes first, so load from elsewhere on the machine falls on
both alike; each figure is the median over rounds. Measured: acknowledged points/s of batch ingest (HTTP
200 = the PubAck came back) and the rate of single-point requests sent one at a time (each waits for its
own fsync). No workers run: the figure is the acknowledgement path alone (gateway + JetStream).

``python -m tests.bench.durability`` (own servers, a few minutes); writes docs/benchmarks-durability.md.
Knobs: BENCH_DURABILITY_ROUNDS (6), BENCH_DURABILITY_POINTS (20000 per round and mode).
"""

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import uvloop

from telemetry_core.embedded import EmbeddedServer, nats_server_binary, start_nats, start_postgres
from telemetry_core.migrate import migrate
from tests.bench.client import make_client
from tests.bench.data import PointMaker, hour_ago
from tests.bench.e2e import acked_batch_rate
from tests.bench.scratch import scratch_dir
from tests.support.servers import Servers
from tests.support.stack import Stack

MODES = {"always": "always", "opt-out (2m)": "2m"}
BATCH = 500
CONCURRENCY = 4
SINGLES = 200
REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-durability.md"
KEPT = "## Measured by hand"


@dataclass
class Result:
    rounds: int
    points: int
    batch_rate: dict[str, list[float]] = field(default_factory=dict)  # acked points/s per round
    single_rate: dict[str, list[float]] = field(default_factory=dict)  # single-point requests/s per round
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def _singles(stack: Stack, prefix: str) -> float:
    client = make_client("httpx", stack.url, stack.headers, 1)
    maker = PointMaker(hour_ago(), SINGLES, seed=7)
    bodies = [msgspec.json.encode(p) for p in maker.points(SINGLES)]
    try:
        start = time.perf_counter()
        for body in bodies:
            status, data = await client.post(f"/api/v1/telemetry/devices/{prefix}/telemetry", body)
            if status != 200:
                raise RuntimeError(f"single point: HTTP {status}: {data[:300]!r}")
        elapsed = time.perf_counter() - start
    finally:
        await client.aclose()
    return SINGLES / elapsed


async def run(stacks: dict[str, Stack], rounds: int, points: int) -> Result:
    result = Result(rounds, points, load_before=os.getloadavg())
    names = list(stacks)
    for r in range(rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        for name in order:
            tag = f"dur{r}{'a' if name == names[0] else 'b'}{int(time.time() * 1000) % 100_000}"
            rate = await acked_batch_rate(stacks[name].url, stacks[name].headers, tag, points, BATCH, CONCURRENCY)
            single = await _singles(stacks[name], f"{tag}-single")
            result.batch_rate.setdefault(name, []).append(rate)
            result.single_rate.setdefault(name, []).append(single)
            print(f"round {r + 1}/{rounds} {name:>14}: {rate:9.0f} acked points/s, {single:6.1f} single req/s",
                  flush=True)  # fmt: skip
    result.load_after = os.getloadavg()
    return result


def _filesystem(path: Path) -> str:
    done = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    return " ".join(lines[-1].split()[:2]) if len(lines) > 1 else "unknown"


def _verdict(result: Result) -> str:
    """Whether the rounds can tell the modes apart at all: overlapping ranges mean they cannot."""
    always, opt_out = (result.batch_rate[name] for name in MODES)
    if max(always) >= min(opt_out) and max(opt_out) >= min(always):
        return (
            "The two ranges overlap: on this disk, under this load, the fsync cost is below what this machine "
            "can resolve (a ratio above 1 is noise, not a gain)."
        )
    return "The ranges do not overlap: the difference is larger than the noise of this run."


def report(result: Result, root: Path) -> str:
    always, opt_out = MODES
    med = {name: statistics.median(v) for name, v in result.batch_rate.items()}
    single = {name: statistics.median(v) for name, v in result.single_rate.items()}
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, check=False)
    rows = "\n".join(
        f"| {name} | {med[name]:,.0f} | {min(result.batch_rate[name]):,.0f} to {max(result.batch_rate[name]):,.0f} "
        f"| {single[name]:,.1f} |"
        for name in MODES
    )
    return f"""# Durability benchmark: fsync before acknowledging

Written by `python -m tests.bench.durability` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

HTTP ingest through one gateway into JetStream, **sync_interval always** (the default: every PubAck, so
every 200, comes after an fsync) against the **opt-out** `TELEMETRY_NATS_SYNC_INTERVAL=2m` (nats-server's
own default: acknowledge at once, fsync every 2 minutes). Both servers ran at the same time, each behind
its own gateway; {result.rounds} rounds alternated which went first; figures are medians over rounds. Batch:
{result.points:,} points per round and mode in batches of {BATCH}, {CONCURRENCY} concurrent clients. Single:
{SINGLES} one-point requests sent one after another. No workers ran (the acknowledgement path alone).

| mode | batch ingest, acked points/s (median) | range over rounds | single-point requests/s |
|---|---|---|---|
{rows}

**Ratio always / opt-out:** batch {med[always] / med[opt_out]:.2f}, single point {single[always] / single[opt_out]:.2f}.
{_verdict(result)}

**Read with care.** This machine is shared and loaded (2 cores for five agents at once; load average
{result.load_before[0]:.1f} before, {result.load_after[0]:.1f} after), so absolute figures say little and
even the ratio moves from run to run. The fsync cost depends above all on the disk: here the data lived on
`{_filesystem(root)}`; a laptop SSD or a cloud volume behaves differently, and a disk with a volatile
write cache that lies about flushes makes `always` cheap and worthless alike. Measure on the target disk.

Setup: {version.stdout.strip()}, Python {platform.python_version()}, {platform.system()} {platform.release()}.
"""


def main() -> None:
    """Own servers in a temp dir, both modes alternating, the report written and printed."""
    rounds = int(os.environ.get("BENCH_DURABILITY_ROUNDS", "6"))
    points = int(os.environ.get("BENCH_DURABILITY_POINTS", "20000"))
    root = scratch_dir("telemetry-bench-durability-")
    postgres = start_postgres(root / "postgres", durable=False)
    servers: list[EmbeddedServer] = [postgres]
    stacks: dict[str, Stack] = {}
    try:
        migrate(postgres.url)
        for name, sync in MODES.items():
            nats_server = start_nats(root / f"nats-{sync}", sync_interval=sync)
            servers.append(nats_server)
            stack = Stack(Servers(nats_server, postgres), root / f"logs-{sync}", suite_settings=False)
            stacks[name] = stack
            stack.start("gateway")
            stack.wait_healthy()
        result = uvloop.run(run(stacks, rounds, points))
        text = report(result, root)
        # A section measured by hand (the test suite's time in each mode) survives a new run.
        kept = REPORT.read_text().partition(KEPT)[2] if REPORT.exists() else ""
        REPORT.write_text(text + (f"\n{KEPT}{kept}" if kept else ""))
        print(text)
    finally:
        for stack in stacks.values():
            stack.stop_all()
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    main()
