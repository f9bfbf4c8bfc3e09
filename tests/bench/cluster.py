"""What a 3-node JetStream cluster with R3 streams costs and how long a node loss stops writes.

1. Ingest rate: one nats-server (R1) against a 3-node cluster (R3: every PubAck waits for a quorum of
   two fsynced copies), each behind a gateway of its own, both running at the same time, one PostgreSQL
   shared; rounds alternate which goes first and each figure is the median over rounds. Measured:
   acknowledged points/s of batch ingest (HTTP 200 = the PubAck came back). No workers run: this is the
   acknowledgement path, where replication happens (workers read from the stream leader either way).
2. Write unavailability: under a steady load of batches through the cluster's gateway, the node leading
   POINTS is SIGKILLed; measured are the 503 answers (count, first to last) and the longest time without
   any 200. The node is then restarted and the cluster left to heal before the next kill.

``python -m tests.bench.cluster`` (own servers, a few minutes); writes docs/benchmarks-cluster.md.
Knobs: BENCH_CLUSTER_ROUNDS (4), BENCH_CLUSTER_POINTS (20000 per round and setup), BENCH_CLUSTER_KILLS (3).
"""

import asyncio
import itertools
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import uvloop

from telemetry_core.embedded import EmbeddedServer, nats_server_binary, start_nats, start_postgres
from telemetry_core.migrate import migrate
from telemetry_core.nats_cluster import NatsCluster, create_topology, start_nats_cluster
from telemetry_core.settings import Settings
from tests.bench.e2e import acked_batch_rate
from tests.bench.scratch import scratch_dir
from tests.support.cluster import ClusterServers
from tests.support.servers import Servers
from tests.support.stack import Stack

BATCH = 500
CONCURRENCY = 4
KILL_BATCH = 100  # smaller batches during the kills: finer time resolution
KILL_WINDOW_S = 12.0  # load kept up after each kill
REPORT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-cluster.md"
SETUPS = ("1 node, R1", "3 nodes, R3")


@dataclass
class Kill:
    leader: str
    unavailable: int  # 503 answers
    window_s: float  # first 503 to last 503 (answer times)
    longest_gap_s: float  # longest time between two successive 200 answers around the kill
    acked_during: int  # 200 answers within KILL_WINDOW_S after the kill
    other_failures: int


@dataclass
class Result:
    rounds: int
    points: int
    rate: dict[str, list[float]] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def _leader(cluster: NatsCluster) -> str:
    nc = await nats.connect(cluster.url.split(","), connect_timeout=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info("POINTS")
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


async def _healed(cluster: NatsCluster, timeout_s: float = 60.0) -> None:
    """Until POINTS has a leader and both followers current (the restarted node caught up)."""
    deadline = time.monotonic() + timeout_s
    nc = await nats.connect(cluster.url.split(","), connect_timeout=2)
    try:
        while time.monotonic() < deadline:
            try:
                info = await nc.jetstream(timeout=2).stream_info("POINTS")
                peers = (info.cluster.replicas or []) if info.cluster else []
                if info.cluster and info.cluster.leader and len(peers) == 2 and all(p.current for p in peers):
                    return
            except Exception:  # no leader yet
                pass
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
    raise RuntimeError(f"the cluster did not heal within {timeout_s}s")


async def _kill_under_load(stack: Stack, cluster: NatsCluster, n: int) -> Kill:
    """Steady load, SIGKILL the POINTS leader, keep loading for KILL_WINDOW_S; answers timed on arrival."""
    answers: list[tuple[float, int]] = []
    stop = asyncio.Event()
    start = datetime.now(UTC) - timedelta(minutes=30)

    async def poster(p: int) -> None:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as client:
            i = 0
            while not stop.is_set():
                base = start + timedelta(seconds=i * KILL_BATCH)
                points = [{"timestamp": (base + timedelta(milliseconds=k)).isoformat(), "metric_name": "m",
                           "value": float(k)} for k in range(KILL_BATCH)]  # fmt: skip
                try:
                    r = await client.post(f"/api/v1/telemetry/devices/kill{n}-{p}/telemetry/batch",
                                          json={"data_points": points})  # fmt: skip
                    answers.append((time.monotonic(), r.status_code))
                except httpx.HTTPError:
                    answers.append((time.monotonic(), 0))
                i += 1

    tasks = [asyncio.create_task(poster(p)) for p in range(CONCURRENCY)]
    await asyncio.sleep(3.0)
    leader = await _leader(cluster)
    killed_at = time.monotonic()
    cluster.node(leader).kill()
    await asyncio.sleep(KILL_WINDOW_S)
    stop.set()
    await asyncio.gather(*tasks)
    after = [(t - killed_at, s) for t, s in answers if t >= killed_at]
    unavailable = [t for t, s in after if s == 503]
    oks = [t for t, s in answers if s == 200]
    gaps = [b - a for a, b in itertools.pairwise(oks) if b >= killed_at]
    kill = Kill(
        leader=leader,
        unavailable=len(unavailable),
        window_s=(max(unavailable) - min(unavailable)) if unavailable else 0.0,
        longest_gap_s=max(gaps, default=0.0),
        acked_during=sum(1 for _t, s in after if s == 200),
        other_failures=sum(1 for _t, s in after if s not in (200, 503)),
    )
    cluster.node(leader).restart()
    await _healed(cluster)
    return kill


async def run(stacks: dict[str, Stack], cluster: NatsCluster, rounds: int, points: int, kills: int) -> Result:
    result = Result(rounds, points, load_before=os.getloadavg())
    for r in range(rounds):
        for name in SETUPS if r % 2 == 0 else tuple(reversed(SETUPS)):
            tag = f"cl{r}{SETUPS.index(name)}{int(time.time() * 1000) % 100_000}"
            rate = await acked_batch_rate(stacks[name].url, stacks[name].headers, tag, points, BATCH, CONCURRENCY)
            result.rate.setdefault(name, []).append(rate)
            print(f"round {r + 1}/{rounds} {name:>12}: {rate:9.0f} acked points/s", flush=True)
    for n in range(kills):
        kill = await _kill_under_load(stacks[SETUPS[1]], cluster, n)
        result.kills.append(kill)
        print(f"kill {n + 1}/{kills}: {kill}", flush=True)
    result.load_after = os.getloadavg()
    return result


def _verdict(result: Result) -> str:
    """Whether the rounds can tell the setups apart at all: overlapping ranges mean they cannot."""
    one, three = (result.rate[name] for name in SETUPS)
    if max(one) >= min(three) and max(three) >= min(one):
        return "The ranges overlap: on this machine the R3 cost is below the noise of the run."
    return "The ranges do not overlap: the difference is larger than the noise of this run."


def report(result: Result) -> str:
    med = {name: statistics.median(v) for name, v in result.rate.items()}
    one, three = SETUPS
    version = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, check=False)
    rows = "\n".join(
        f"| {name} | {med[name]:,.0f} | {min(result.rate[name]):,.0f} to {max(result.rate[name]):,.0f} |"
        for name in SETUPS
    )
    kills = "\n".join(
        f"| {i + 1} | {k.leader} | {k.unavailable} | {k.window_s:.2f} | {k.longest_gap_s:.2f} | {k.acked_during} "
        f"| {k.other_failures} |"
        for i, k in enumerate(result.kills)
    )
    windows = [k.window_s for k in result.kills]
    gaps = [k.longest_gap_s for k in result.kills]
    return f"""# Cluster benchmark: 3 nodes with R3 streams against one node

Written by `python -m tests.bench.cluster` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

## Ingest rate

HTTP batch ingest through one gateway into JetStream: **one nats-server** (streams R1) against a
**3-node cluster on loopback** (streams R3: a PubAck, so a 200, waits until two of the three nodes have the
batch, each fsynced: `sync_interval: always`). Both ran at the same time, one PostgreSQL shared; {result.rounds}
rounds alternated which went first; figures are medians over rounds. {result.points:,} points per round and
setup in batches of {BATCH}, {CONCURRENCY} concurrent clients. No workers ran (the acknowledgement path alone).

| setup | acked points/s (median) | range over rounds |
|---|---|---|
{rows}

**Ratio 3 nodes R3 / 1 node R1: {med[three] / med[one]:.2f}.** {_verdict(result)}

## Write unavailability when a node is killed

Under a steady load ({CONCURRENCY} clients, batches of {KILL_BATCH} points) through the cluster's gateway
(TELEMETRY_PUBLISH_TIMEOUT 2 s, publishes retried within it with the same Nats-Msg-Id), the node leading
POINTS was SIGKILLed; answers were counted for {KILL_WINDOW_S:.0f} s after, then the node was restarted and
the cluster left to heal (restarted replica current again) before the next kill.

| kill | leader killed | 503 answers | 503 window s (first to last) | longest time without a 200, s | 200s in the {KILL_WINDOW_S:.0f} s after | other failures |
|---|---|---|---|---|---|---|
{kills}

**Write unavailability window: median {statistics.median(windows):.2f} s of 503s
(longest time without any acknowledged batch: median {statistics.median(gaps):.2f} s).** A client that retries
a 503 after a second loses nothing: every 200 before and after was stored (tests/e2e/test_cluster_faults.py
checks it point by point). A publish timeout longer than the election (TELEMETRY_PUBLISH_TIMEOUT=5) turns
most of these 503s into slow 200s.

**Read with care.** Three nodes on one loaded, shared machine (2 cores for several agents; load average
{result.load_before[0]:.1f} before, {result.load_after[0]:.1f} after) share its CPU and disk: on real machines
each node has its own, and the R3 cost is then mostly one network round trip to the nearest follower plus
its fsync. The ratio here overstates the cost; measure on the target network and disks.

Setup: {version.stdout.strip()}, Python {platform.python_version()}, {platform.system()} {platform.release()}.
"""


def main() -> None:
    """Own servers in a temp dir; rates alternating, then the kills; the report written and printed."""
    rounds = int(os.environ.get("BENCH_CLUSTER_ROUNDS", "4"))
    points = int(os.environ.get("BENCH_CLUSTER_POINTS", "20000"))
    kills = int(os.environ.get("BENCH_CLUSTER_KILLS", "3"))
    root = scratch_dir("telemetry-bench-cluster-")
    postgres = start_postgres(root / "postgres", durable=False)
    servers: list[EmbeddedServer] = [postgres]
    cluster: NatsCluster | None = None
    stacks: dict[str, Stack] = {}
    try:
        migrate(postgres.url)
        single = start_nats(root / "nats-single")
        servers.append(single)
        cluster = start_nats_cluster(root / "nats-cluster", 3)
        create_topology(cluster.url, Settings(stream_replicas=3))
        stacks[SETUPS[0]] = Stack(Servers(single, postgres), root / "logs-single", suite_settings=False)
        stacks[SETUPS[1]] = Stack(ClusterServers(cluster, postgres.url), root / "logs-cluster",  # type: ignore[arg-type]
                                  extra_env={"TELEMETRY_STREAM_REPLICAS": "3"}, suite_settings=False)  # fmt: skip
        for stack in stacks.values():
            stack.start("gateway")
            stack.wait_healthy()
        result = uvloop.run(run(stacks, cluster, rounds, points, kills))
        text = report(result)
        REPORT.write_text(text)
        print(text)
    finally:
        for stack in stacks.values():
            stack.stop_all()
        if cluster is not None:
            cluster.stop()
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    main()
