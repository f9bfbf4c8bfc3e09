"""Reads from a streaming replica (DATABASE_READ_URL) against reads from the primary, in one run.

`python -m tests.bench.replica_reads` (part of `make bench`) writes docs/benchmarks-replica.md:

* the replica's set-up time (pg_basebackup of the primary, start, WAL receiver streaming);
* q1 (latest value of one series) sequential p50/p99 through a gateway reading the primary (the baseline) and
  through one reading the replica, alternating blocks so both see the same machine load;
* a metric definition create (a command that waits until its read model shows it: read-your-writes) through
  each gateway: with the replica the wait polls the replica, so it also pays for replication;
* the replay lag `/health/detailed` reports (read_replica) at rest and while points are being ingested.

Both gateways run as processes against the same servers and workers; figures are ratios to the primary's.
"""

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.bench.client import Poster, make_client
from tests.bench.config import env_int
from tests.bench.e2e import build_batches, post_batches
from tests.bench.scratch import scratch_dir
from tests.bench.stats import percentile
from tests.support.ids import unique
from tests.support.pg_replica import start_replica
from tests.support.servers import start_servers
from tests.support.stack import Stack

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-replica.md"
DEVICE, METRIC = "bench-replica-dev", "temperature"
Q1 = f"/api/v1/telemetry/devices/{DEVICE}/metrics/{METRIC}/latest"


def say(message: str) -> None:
    print(f"[replica-bench] {message}", flush=True)


def ms(values: list[float], q: float) -> float:
    return percentile(values, q) * 1000


async def sequential_gets(client: Poster, path: str, n: int) -> list[float]:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        status, body = await client.get(path)
        lat.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    return lat


async def q1_alternating(clients: dict[str, Poster], rounds: int, per_round: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():
        await sequential_gets(client, Q1, 200)  # warm-up: connections, prepared statements
    for _ in range(rounds):
        for name, client in clients.items():
            lat[name] += await sequential_gets(client, Q1, per_round)
    return lat


def creates(gateways: dict[str, Stack], rounds: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {name: [] for name in gateways}
    clients = {name: httpx.Client(base_url=g.url, headers=g.headers, timeout=30) for name, g in gateways.items()}
    try:
        for _ in range(rounds):
            for name, client in clients.items():
                t = time.perf_counter()
                r = client.post("/api/v1/telemetry/metrics", json={"name": unique("bench_rep"), "data_type": "numeric"})
                lat[name].append(time.perf_counter() - t)
                if r.status_code != 201:
                    raise RuntimeError(f"create via {name}: {r.status_code} {r.text[:200]}")
    finally:
        for client in clients.values():
            client.close()
    return lat


def replica_health(gateway: Stack) -> dict[str, Any]:
    r = httpx.get(f"{gateway.url}/health/detailed", headers=gateway.headers, timeout=10)
    return dict(r.json()["components"]["read_replica"]["metrics"])


async def lag_under_ingest(primary_gw: Stack, replica_gw: Stack, points: int) -> list[tuple[int, float]]:
    """(replay_lag_bytes, replay_lag_s) every 100 ms while ``points`` points are posted and stored (replica caught up)."""
    samples: list[tuple[int, float]] = []
    client = make_client("raw", primary_gw.url, primary_gw.headers, 4)
    done = asyncio.Event()

    async def sample() -> None:
        # On after the last post until the replica has caught up: the workers are still storing what was acked.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = await asyncio.to_thread(replica_health, replica_gw)
            samples.append((int(m["replay_lag_bytes"] or 0), float(m["replay_lag_s"])))
            if done.is_set() and samples[-1][0] == 0:
                return
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    try:
        await post_batches(client, build_batches("bench-replica-lag", points, 500, 20), 4)
    finally:
        done.set()
        await sampler
        await client.aclose()
    return samples


def seed(gateway: Stack) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    points = [{"timestamp": (now - timedelta(hours=h)).isoformat(), "metric_name": METRIC, "value": float(h)}
              for h in range(24)]  # fmt: skip
    with httpx.Client(base_url=gateway.url, headers=gateway.headers, timeout=15) as c:
        assert c.post(f"/api/v1/telemetry/devices/{DEVICE}/telemetry/batch", json={"data_points": points}).is_success


def wait_q1(gateway: Stack) -> None:
    deadline = time.monotonic() + 120
    while httpx.get(f"{gateway.url}{Q1}", headers=gateway.headers, timeout=10).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"q1 not answered by {gateway.url} within 120 s")
        time.sleep(0.2)


def report(setup_s: float, q1: dict[str, list[float]], made: dict[str, list[float]], rest: dict[str, Any],
           lag: list[tuple[int, float]], load: float) -> str:  # fmt: skip
    def row(label: str, values: dict[str, list[float]], q: float) -> str:
        p, r = ms(values["primary"], q), ms(values["replica"], q)
        return f"| {label} | {p:.2f} ms | {r:.2f} ms | {r / p:.2f}x |"

    worst_bytes = max((b for b, _ in lag), default=0)
    worst_s = max((s for _, s in lag), default=0.0)
    return (
        "# Reads from a streaming replica (`DATABASE_READ_URL`)\n\n"
        f"Written by `python -m tests.bench.replica_reads` (part of `make bench`) on {datetime.now(UTC):%Y-%m-%d %H:%M}"
        f" UTC, {os.cpu_count()} cores, load average before the run {load:.1f}. One primary and one streaming "
        "replica (pgserver wheel, PostgreSQL 16, both on this machine), the same workers; two gateway processes, "
        "one reading the primary (the baseline), one with DATABASE_READ_URL set. Alternating blocks of requests. "
        "PostgreSQL durable (fsync, synchronous_commit on): with synchronous_commit off the primary sends WAL "
        "only when its WAL writer flushes (every 200 ms), and a create through the replica took ~4x as long.\n\n"
        f"Replica set-up (pg_basebackup of a freshly migrated primary, start, WAL receiver streaming): "
        f"{setup_s:.2f} s.\n\n"
        "| figure | reads on the primary (baseline) | reads on the replica | ratio |\n|---|---|---|---|\n"
        + "\n".join(
            [
                row(f"q1 sequential p50 (n={len(q1['primary'])} each)", q1, 50),
                row("q1 sequential p99", q1, 99),
                row(
                    f"metric definition create p50 (n={len(made['primary'])} each; waits for its read model)", made, 50
                ),
                row("metric definition create p99", made, 99),
            ]
        )
        + "\n\n"
        f"Replay lag at rest (`/health/detailed` read_replica): {rest['replay_lag_bytes']} bytes, "
        f"{rest['replay_lag_s']} s. While {len(lag)} samples were taken during an ingest burst: at most "
        f"{worst_bytes:,} bytes and {worst_s:.3f} s behind.\n\n"
        "On one machine the replica adds no capacity (same cores, same disk); the point of this table is what "
        "the second hop costs: q1 is one indexed row either way, and a create through the replica-reading "
        "gateway additionally waits for the WAL to reach and be replayed on the replica before it answers.\n"
    )


def main() -> None:
    rounds, per_round, create_rounds = env_int("BENCH_REPLICA_ROUNDS", 10), env_int("BENCH_REPLICA_PER_ROUND", 200), 30
    root = scratch_dir("telemetry-replica-bench-")
    # Durable: with synchronous_commit=off (the suite's throwaway servers) WAL reaches the replica only when the
    # WAL writer flushes it (every 200 ms), which made writes through the replica ~4x slower than they are.
    servers = start_servers(root / "servers", durable=True)
    load = os.getloadavg()[0]
    # A loaded machine can take seconds to fsync a JetStream acknowledgement: the burst waits, not fails.
    patient = {"TELEMETRY_PUBLISH_TIMEOUT": "15"}
    workers = Stack(servers, root / "logs", extra_env=patient, suite_settings=False)
    gateways: dict[str, Stack] = {}
    replica = None
    try:
        t0 = time.monotonic()
        replica = start_replica(servers.postgres.port, root / "replica")  # type: ignore[attr-defined]
        setup_s = time.monotonic() - t0
        say(f"replica streaming after {setup_s:.2f} s")
        for name in ("ingest-worker", "projection-worker", "alert-worker", "gateway"):
            workers.start(name)
        gateways["primary"] = workers
        gateways["replica"] = Stack(
            servers,
            root / "logs-replica",
            extra_env={"DATABASE_READ_URL": replica.url, **patient},
            suite_settings=False,
        )
        gateways["replica"].start("gateway")
        for gateway in gateways.values():
            gateway.wait_healthy(timeout=300)  # a shared, loaded machine can take minutes to start a Python process
        seed(workers)
        for gateway in gateways.values():
            wait_q1(gateway)

        async def reads() -> dict[str, list[float]]:
            clients = {name: make_client("raw", g.url, g.headers, 1) for name, g in gateways.items()}
            try:
                return await q1_alternating(clients, rounds, per_round)
            finally:
                for c in clients.values():
                    await c.aclose()

        q1 = asyncio.run(reads())
        say(f"q1 p50 primary {ms(q1['primary'], 50):.2f} ms, replica {ms(q1['replica'], 50):.2f} ms")
        made = creates(gateways, create_rounds)
        say(f"create p50 primary {ms(made['primary'], 50):.1f} ms, replica {ms(made['replica'], 50):.1f} ms")
        rest = replica_health(gateways["replica"])
        lag = asyncio.run(lag_under_ingest(workers, gateways["replica"], env_int("BENCH_REPLICA_LAG_POINTS", 20_000)))
        text = report(setup_s, q1, made, rest, lag, load)
        DOC.write_text(text)
        print(text)
    finally:
        for gateway in gateways.values():
            gateway.stop_all()
        if replica is not None:
            replica.stop()
        servers.stop()


if __name__ == "__main__":
    main()
