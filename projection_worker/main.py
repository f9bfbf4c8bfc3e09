"""`telemetry projection-worker`: one durable consumer per projection, until SIGTERM."""

import asyncio
import os

from projection_worker.projections import alert_rules, alerts, latest_values, metric_definitions, rollups
from projection_worker.runner import Projection, ProjectionRunner
from telemetry_core import consumer_loop
from telemetry_core.logging import configure_logging
from telemetry_core.nats_conn import close_nats
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_core.worker_runtime import start_worker

PROJECTIONS: list[Projection] = [latest_values, metric_definitions, rollups, alert_rules, alerts]


async def serve(settings: Settings) -> None:
    """Run every projection's consumer loop until a stop signal."""
    log = configure_logging(settings, "projection-worker")
    rt = await start_worker(settings, "projection-worker", log)
    stop, nc, js, database_url = rt.stop, rt.nc, rt.js, rt.database_url
    pool = make_pool(database_url, min_size=1, max_size=len(PROJECTIONS) + 1, timeout_s=30.0)
    await pool.open(wait=True, timeout=30.0)
    try:
        await asyncio.gather(
            *(
                consumer_loop.run(
                    js,
                    p.SPEC,
                    f"projection.{p.NAME}",
                    ProjectionRunner(pool, p),
                    stop,
                    batch=getattr(p, "BATCH", 256),
                    max_deliveries=settings.max_deliveries,
                    log=log.bind(projection=p.NAME),
                )
                for p in PROJECTIONS
            )
        )
    finally:
        await pool.close()
        await close_nats(nc)


def main() -> None:
    """Entry point."""
    asyncio.run(serve(Settings.from_env(os.environ)))
