"""`telemetry ingest-worker`: consume POINTS into PostgreSQL until SIGTERM."""

import asyncio
import os
import signal

from ingest_worker.handler import WORKER, IngestHandler
from telemetry_core import consumer_loop
from telemetry_core.logging import configure_logging
from telemetry_core.nats_conn import connect
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_core.topology import INGEST, ensure_topology


async def serve(settings: Settings) -> None:
    """Connect, ensure the topology, and run the consumer loop until a stop signal."""
    log = configure_logging(settings, "ingest-worker")
    nats_url, database_url = settings.require_servers()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await connect(nats_url, "telemetry-ingest-worker", log)
    js = nc.jetstream(timeout=5.0)
    await ensure_topology(js, settings)
    pool = make_pool(database_url, min_size=1, max_size=2, timeout_s=30.0)
    await pool.open(wait=True, timeout=30.0)
    handler = IngestHandler(pool, nc, js, settings.event_prefix, log)
    try:
        await consumer_loop.run(
            js, INGEST, WORKER, handler, stop,
            batch=settings.ingest_fetch_batch, max_deliveries=settings.max_deliveries, log=log,
        )  # fmt: skip
    finally:
        log.info("stopping", points_written=handler.points_written)
        await pool.close()
        await nc.drain()


def main() -> None:
    """Entry point."""
    asyncio.run(serve(Settings.from_env(os.environ)))
