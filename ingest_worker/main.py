"""`telemetry ingest-worker`: consume POINTS into PostgreSQL until SIGTERM."""

import asyncio
import contextlib
import os
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from ingest_worker.handler import WORKER, IngestHandler
from ingest_worker.writer import PartitionCache
from telemetry_core import consumer_loop
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.logging import configure_logging
from telemetry_core.nats_conn import close_nats
from telemetry_core.pg_pool import make_pool
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import INGEST
from telemetry_core.worker_runtime import start_worker


async def create_partitions_ahead(
    pool: AsyncConnectionPool, cache: PartitionCache, days: int, stop: asyncio.Event
) -> None:
    """Keep partitions for today and the next ``days`` days in place, checking hourly."""
    while not stop.is_set():
        today = datetime.now(UTC).date()
        with contextlib.suppress(Exception):  # best effort: the write path creates what it needs anyway
            async with pool.connection() as conn:
                await cache.ensure(conn, {today + timedelta(days=i) for i in range(days + 1)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=3600)


async def serve(settings: Settings) -> None:
    """Connect, ensure the topology, and run the consumer loop until a stop signal."""
    log = configure_logging(settings, "ingest-worker")
    signing_key = settings.require_signing_key()
    rt = await start_worker(settings, "ingest-worker", log)
    stop, nc, js, database_url = rt.stop, rt.nc, rt.js, rt.database_url
    loops = settings.ingest_concurrency
    pool = make_pool(database_url, min_size=1, max_size=loops + 1, timeout_s=30.0)
    await pool.open(wait=True, timeout=30.0)
    definitions = DefinitionsCache(js, log)
    await definitions.start()
    validator = PointsValidator(signing_key, definitions.check)
    handler = IngestHandler(pool, nc, js, settings.event_prefix, log, validator)
    ahead = asyncio.create_task(create_partitions_ahead(pool, handler.partitions, settings.partitions_ahead_days, stop))
    try:
        # Several loops share the handler: while one waits on PostgreSQL, another decodes. Overlapping
        # transactions are safe because rows only replace rows from earlier in the stream (src_seq).
        await asyncio.gather(
            *(
                consumer_loop.run(
                    js,
                    INGEST,
                    WORKER,
                    handler,
                    stop,
                    batch=settings.ingest_fetch_batch,
                    max_deliveries=settings.max_deliveries,
                    log=log,
                )
                for _ in range(loops)
            )
        )
    finally:
        ahead.cancel()
        await definitions.stop()
        log.info("stopping", points_written=handler.points_written)
        await pool.close()
        await close_nats(nc)


def main() -> None:
    """Entry point."""
    asyncio.run(serve(Settings.from_env(os.environ)))
