"""`telemetry ingest-worker`: consume POINTS into PostgreSQL until SIGTERM."""

import asyncio
import contextlib
import os
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from ingest_worker.handler import WORKER, IngestHandler
from ingest_worker.retention_loop import run_retention_periodically
from ingest_worker.sketch_compaction import compact_periodically
from ingest_worker.writer import PartitionCache
from telemetry_core import event_loop
from telemetry_core.consumer_runtime import ConsumerRuntime, Policy
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.events_out import events_out
from telemetry_core.gc_tuning import tune_gc
from telemetry_core.logging import configure_logging
from telemetry_core.points_validator import consumer_validator
from telemetry_core.settings import Settings
from telemetry_core.stopping import sleep_or_stop, until_stopped
from telemetry_core.topology import INGEST
from telemetry_core.worker_runtime import WorkerRuntime, run_worker

# A fetch of POINTS messages holding fewer bytes than this may linger (TELEMETRY_INGEST_LINGER): ~400 points of
# small JSON, e.g. 16 single-point POSTs hold ~3 KB; one 1,000-point batch ~100 KB.
LINGER_MAX_BYTES = 64 * 1024


async def _ensure_days(pool: AsyncConnectionPool, cache: PartitionCache, days: int) -> None:
    today = datetime.now(UTC).date()
    async with pool.connection() as conn:
        await cache.ensure(conn, {today + timedelta(days=i) for i in range(days + 1)})


async def create_partitions_ahead(
    pool: AsyncConnectionPool, cache: PartitionCache, days: int, stop: asyncio.Event
) -> None:
    """Keep partitions for today and the next ``days`` days in place, checking hourly."""
    while not stop.is_set():
        with contextlib.suppress(Exception):  # best effort: the write path creates what it needs anyway
            await until_stopped(stop, _ensure_days(pool, cache, days))
        await sleep_or_stop(stop, 3600)


async def consume(rt: WorkerRuntime, settings: Settings) -> None:
    """Run the ingest handler on ``ingest_concurrency`` consumer runtimes until the stop signal."""
    loops = settings.ingest_concurrency
    pool = await rt.open_pool(min_size=1, max_size=loops + 1)
    definitions = DefinitionsCache(rt.js, rt.log)
    rt.at_exit("stop_definitions", definitions.stop)
    await rt.until_stopped(definitions.start())
    # Signed messages were validated by their signer: read them without re-checking each point (trust_signed).
    validator = consumer_validator(settings.require_signing_key(), definitions.check)
    handler = IngestHandler(pool, rt.js, events_out(rt.nc, settings.event_prefix, rt.log), rt.log, validator, rt.nc)
    # Several small messages in a fetch (concurrent writers of a few points each, e.g. single-point POSTs) wait
    # ingest_linger_s for more: per-transaction costs (commit, notices, fetches) shared by more points. A lone
    # message is written at once (a trickle's lag), and so are fetches holding LINGER_MAX_BYTES or more (big
    # batches: waiting made a 1 M-point load of 1,000-point messages 0.92x as fast).
    policy = Policy(batch=settings.ingest_fetch_batch, max_deliveries=settings.max_deliveries,
                    linger_s=settings.ingest_linger_s, linger_min=2, linger_max_bytes=LINGER_MAX_BYTES)  # fmt: skip
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(create_partitions_ahead(pool, handler.partitions, settings.partitions_ahead_days, rt.stop))
            tg.create_task(run_retention_periodically(settings, rt.log, rt.stop))
            tg.create_task(compact_periodically(pool, settings.sketch_compaction_interval_s, rt.log, rt.stop))
            # Several runtimes share the handler: while one waits on PostgreSQL, another decodes. Overlapping
            # transactions are safe because rows only replace rows from earlier in the stream (src_seq).
            for _ in range(loops):
                tg.create_task(ConsumerRuntime(rt.js, INGEST, WORKER, handler, rt.stop, rt.log, policy).run())
    finally:
        rt.log.info("stopping", points_written=handler.points_written)


async def serve(settings: Settings) -> None:
    """Connect, ensure the topology, and consume until a stop signal."""
    log = configure_logging(settings, "ingest-worker")
    tune_gc(settings.gc_threshold, "ingest-worker")
    await run_worker(settings, "ingest-worker", log, lambda rt: consume(rt, settings))


def main() -> None:
    """Entry point."""
    event_loop.run(serve(Settings.from_env(os.environ)))
