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
from projection_worker.stats_guard import prune_until_stopped
from telemetry_core import event_loop
from telemetry_core.consumer_runtime import ConsumerRuntime, Policy
from telemetry_core.gc_tuning import tune_gc
from telemetry_core.logging import configure_logging
from telemetry_core.partition_lock import hold_partition
from telemetry_core.settings import Settings
from telemetry_core.stopping import sleep_or_stop
from telemetry_core.stream_guard import StreamChanged, StreamGuard
from telemetry_core.topology import platform_consumer
from telemetry_core.worker_runtime import WorkerRuntime, run_worker

PROJECTIONS: list[Projection] = [
    latest_values, metric_definitions, rollups, alert_rules, alerts, api_keys, device_stats, dead_letter_stats,
]  # fmt: skip


# How often a projection stopped by a changed stream looks whether `telemetry replay` has reset it.
HALTED_RECHECK_S = 5.0


async def run_until_stopped(rt: WorkerRuntime, runtime: ConsumerRuntime) -> None:
    """Run one projection's consumer; when its stream changed under it, stay stopped until a replay resets it.

    The other projections go on (their streams may be fine). The guard has logged the error with the fix and
    recorded it for /health/detailed; each recheck logs it again while it lasts.
    """
    while not rt.stop.is_set():
        try:
            await runtime.run()
            return
        except StreamChanged:
            if await sleep_or_stop(rt.stop, HALTED_RECHECK_S):
                return


# The advisory lock one projection worker copy holds while it applies; other copies stand by (see consume).
PROJECTIONS_LOCK = "projection-worker"


async def consume(rt: WorkerRuntime, settings: Settings) -> None:
    """Take the projections' lock (a standby waits), then run every projection in stream order until stopped.

    Only one copy may apply: each read model's checkpoint is a high-water mark, so a copy that committed a
    later batch first would make another copy skip its earlier one. A second copy is a standby that takes
    over within a second of the active one's death (its PostgreSQL session, and so the lock, ends with it).
    """
    lock = await hold_partition(rt.database_url, PROJECTIONS_LOCK, rt.stop, rt.log)
    if lock is None:  # stopped while standing by
        return
    rt.at_exit("release_projections_lock", lock.release)  # registered first, so it runs after the pool closes
    await _apply_all(rt, settings)
    if lock.lost.is_set():  # a standby may apply now: exit non-zero so a supervisor restarts us as a standby
        raise SystemExit("projection-worker: lost the projections lock")


async def _apply_all(rt: WorkerRuntime, settings: Settings) -> None:
    pool = await rt.open_pool(min_size=1, max_size=len(PROJECTIONS) + 2)
    async with asyncio.TaskGroup() as tg:
        for p in PROJECTIONS:
            policy = Policy(
                batch=getattr(p, "BATCH", 256),
                max_deliveries=settings.max_deliveries,
                ordered=True,
                linger_s=getattr(p, "LINGER_S", 0.0),
            )
            log = rt.log.bind(projection=p.NAME)
            fix = f"run `telemetry replay {p.NAME}`; this worker resumes by itself once it has run"
            guard = StreamGuard(rt.nc, rt.js, pool, consumer=p.NAME, stream=p.SPEC.stream, log=log, fix=fix)
            runner = ProjectionRunner(pool, p, guard)
            runtime = ConsumerRuntime(rt.js, p.SPEC, f"projection.{p.NAME}", runner, rt.stop, log, policy, guard=guard)
            tg.create_task(run_until_stopped(rt, runtime))
        # device_stats' record of counted POINTS messages forgets those the ingest consumer acknowledged.
        tg.create_task(prune_until_stopped(pool, rt.js, rt.stop, rt.log.bind(projection=device_stats.NAME)))
        # Platform events in (FR-020): deletions from other services, in order, one message at a time.
        platform = PlatformEventsHandler(pool, rt.js, settings, rt.log.bind(consumer="platform_events"))
        policy = Policy(batch=1, max_deliveries=settings.max_deliveries, ordered=True)
        tg.create_task(ConsumerRuntime(rt.js, platform_consumer(settings), WORKER, platform, rt.stop,
                                       rt.log.bind(consumer="platform_events"), policy).run())  # fmt: skip


async def serve(settings: Settings) -> None:
    """Run the projections until a stop signal."""
    log = configure_logging(settings, "projection-worker")
    tune_gc(settings.gc_threshold, "projection-worker")
    await run_worker(settings, "projection-worker", log, lambda rt: consume(rt, settings))


def main() -> None:
    """Entry point."""
    event_loop.run(serve(Settings.from_env(os.environ)))
