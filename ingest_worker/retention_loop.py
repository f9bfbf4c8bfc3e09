"""The scheduled retention job: every ``TELEMETRY_RETENTION_INTERVAL`` seconds, in every ingest worker.

It lives in the ingest worker because that worker owns the points partitions (it creates them ahead; this
removes them behind). Several ingest workers each schedule it; the job's advisory lock lets one run at a
time and the others skip that round (telemetry_core/retention.py).
"""

import asyncio

import structlog

from telemetry_core.retention import run_retention
from telemetry_core.settings import Settings
from telemetry_core.stopping import Stopped, sleep_or_stop, until_stopped

# The first run waits this long (or the interval, if shorter) after start-up: a worker restarting in a loop
# should not run a long job each time, and start-up has better things to do.
FIRST_RUN_DELAY_S = 60.0


async def run_retention_periodically(
    settings: Settings, log: structlog.stdlib.BoundLogger, stop: asyncio.Event
) -> None:
    """Run the retention job until the stop signal; a failed run is logged and retried next interval."""
    interval = settings.retention_interval_s
    if interval <= 0 or settings.database_url is None:
        return
    if await sleep_or_stop(stop, min(FIRST_RUN_DELAY_S, float(interval))):
        return
    while not stop.is_set():
        try:
            report = await until_stopped(stop, run_retention(settings.database_url, settings))
            if not report.skipped:
                log.info("retention_run", partitions_dropped=report.partitions_dropped,
                         points_removed=report.points_removed, points_in_dropped=report.points_in_dropped,
                         points_deleted_in_chunks=report.points_deleted_in_chunks,
                         rollup_rows_deleted=report.rollup_rows_deleted, seconds=round(report.seconds, 3))  # fmt: skip
        except Stopped:
            return
        except Exception as exc:  # the next interval tries again; ingestion is unaffected
            log.warning("retention_failed", error=str(exc))
        if await sleep_or_stop(stop, float(interval)):
            return
