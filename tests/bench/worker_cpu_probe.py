"""One tree's ingest path in one process, no HTTP: CPU per point of the worker and of PostgreSQL (JSON on stdout).

Run by tests/bench/worker_cpu.py as a script with a tree's own Python and ``PYTHONPATH=<tree>``, so the
handler, the writer and the migrations are that tree's. It starts its own NATS and PostgreSQL, publishes
BENCH_PROBE_MESSAGES signed 1000-point messages of one device each (50 devices, the sustained run's data),
then runs the real IngestHandler over fetches of 64 and acks them, as the worker's consumer loop does. The
window covers only that loop: worker = this process's CPU, postgres = every PostgreSQL process's CPU.
"""

import asyncio
import inspect
import json
import os
import time

import msgspec
import nats
import psutil
import structlog

from ingest_worker.handler import IngestHandler
from telemetry_core.events_out import events_out
from telemetry_core.headers import SIGNATURE
from telemetry_core.pg_pool import make_pool
from telemetry_core.points_validator import PointsValidator, points_body
from telemetry_core.settings import Settings
from telemetry_core.topology import INGEST, ensure_topology, points_subject
from tests.bench.data import PointMaker, hour_ago
from tests.bench.scratch import scratch_dir
from tests.support.servers import start_servers

KEY = b"probe-signing-key-0123456789abcdef"
DEVICES, FETCH = 50, 64


def postgres_cpu(postmaster: int) -> float:
    total = 0.0
    for p in psutil.Process(postmaster).children(recursive=True):
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


async def probe(messages: int) -> dict[str, float]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    servers = start_servers(scratch_dir("wc-probe-"))
    try:
        env = {**os.environ, "NATS_URL": servers.nats_url, "DATABASE_URL": servers.database_url,
               "TELEMETRY_SIGNING_KEY": KEY.decode(), "TELEMETRY_API_KEYS": "probe-key-0123456789"}  # fmt: skip
        settings = Settings.from_env(env)
        nc = await nats.connect(servers.nats_url)
        js = nc.jetstream()
        await ensure_topology(js, settings)
        # As the tree's ingest worker builds it: trusting signed messages where that option exists (ingest_worker/main.py).
        trusting = "trust_signed" in inspect.signature(PointsValidator).parameters
        validator = PointsValidator(KEY, trust_signed=True) if trusting else PointsValidator(KEY)
        makers = [PointMaker(hour_ago(), 20_000, seed=d) for d in range(DEVICES)]
        encode = msgspec.json.Encoder().encode
        for b in range(messages + FETCH):  # the first fetch warms up (partitions, caches, prepared statements)
            device = f"probe-{b % DEVICES:03d}"
            body = points_body(device, [encode(p) for p in makers[b % DEVICES].points(1000)], None, None)
            await js.publish(points_subject(device), body, headers={SIGNATURE: validator.signature(body)})
        pool = make_pool(servers.database_url, max_size=3)
        await pool.open(wait=True)
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        postmaster = psutil.Process(row[0]).ppid()
        log = structlog.get_logger()
        # Older trees' handlers (BENCH_BASE_TREE) take no NATS client: they announce nothing before committing.
        announce = (nc,) if "nc" in inspect.signature(IngestHandler).parameters else ()
        handler = IngestHandler(pool, js, events_out(nc, settings.event_prefix, log), log, validator, *announce)
        sub = await js.pull_subscribe_bind(INGEST.durable, INGEST.stream)

        async def one_fetch() -> int:
            msgs = await sub.fetch(FETCH, timeout=5)
            await handler(msgs)
            for m in msgs:
                await m.ack()
            return len(msgs)

        warm = 0
        while warm < FETCH:
            warm += await one_fetch()
        cpu, pg, wall = time.process_time(), postgres_cpu(postmaster), time.perf_counter()
        done = 0
        while done < messages + FETCH - warm:
            done += await one_fetch()
        points = done * 1000
        result = {
            "points": points,
            "worker_us": (time.process_time() - cpu) / points * 1e6,
            "postgres_us": (postgres_cpu(postmaster) - pg) / points * 1e6,
            "wall_us": (time.perf_counter() - wall) / points * 1e6,
        }
        await pool.close()
        await nc.close()
        return result
    finally:
        servers.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(int(os.environ.get("BENCH_PROBE_MESSAGES", "256"))))))
