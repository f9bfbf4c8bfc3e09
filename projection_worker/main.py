"""`telemetry projection-worker`: one durable consumer per projection, until SIGTERM."""

import asyncio
import os

from projection_worker.platform_events import WORKER, PlatformEventsHandler
from projection_worker.projections import (
    alert_rules,
    alerts,
    api_keys,
    dead_letter_stats,
    device_stats,
    latest_values,
    metric_definitions,
    rollups,
)
from projection_worker.runner import Projection, ProjectionRunner
from telemetry_core.consumer_runtime import ConsumerRuntime, Policy
from telemetry_core.logging import configure_logging
from telemetry_core.settings import Settings
from telemetry_core.topology import platform_consumer
from telemetry_core.worker_runtime import WorkerRuntime, run_worker

PROJECTIONS: list[Projection] = [
    latest_values, metric_definitions, rollups, alert_rules, alerts, api_keys, device_stats, dead_letter_stats,
]  # fmt: skip


async def consume(rt: WorkerRuntime, settings: Settings) -> None:
    """Run every projection on its own consumer runtime, in stream order, until the stop signal."""
    pool = await rt.open_pool(min_size=1, max_size=len(PROJECTIONS) + 2)
    async with asyncio.TaskGroup() as tg:
        for p in PROJECTIONS:
            policy = Policy(batch=getattr(p, "BATCH", 256), max_deliveries=settings.max_deliveries, ordered=True)
            runtime = ConsumerRuntime(rt.js, p.SPEC, f"projection.{p.NAME}", ProjectionRunner(pool, p), rt.stop,
                                      rt.log.bind(projection=p.NAME), policy)  # fmt: skip
            tg.create_task(runtime.run())
        # Platform events in (FR-020): deletions from other services, in order, one message at a time.
        platform = PlatformEventsHandler(pool, rt.js, settings, rt.log.bind(consumer="platform_events"))
        policy = Policy(batch=1, max_deliveries=settings.max_deliveries, ordered=True)
        tg.create_task(ConsumerRuntime(rt.js, platform_consumer(settings), WORKER, platform, rt.stop,
                                       rt.log.bind(consumer="platform_events"), policy).run())  # fmt: skip


async def serve(settings: Settings) -> None:
    """Run the projections until a stop signal."""
    log = configure_logging(settings, "projection-worker")
    await run_worker(settings, "projection-worker", log, lambda rt: consume(rt, settings))


def main() -> None:
    """Entry point."""
    asyncio.run(serve(Settings.from_env(os.environ)))
