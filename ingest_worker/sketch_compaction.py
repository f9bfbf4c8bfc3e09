"""The hours' pending sketches folded into their rows: every ``TELEMETRY_SKETCH_COMPACTION_INTERVAL`` seconds.

The ingest transaction merges a batch into an hour row that already exists without rebuilding the row's sketch:
it appends the batch's sketch to ``telemetry.rollup_hour_pending`` (migration 0023), and readers merge the two.
This loop keeps that table small (reads stay cheap) and rebuilds an hour's sketch once per ``MIN_PENDING`` batches
instead of once per batch. It runs in every ingest worker; several folding at once is safe (each
folds exactly the pending rows it deletes, under the hour rows' locks taken in key order).
"""

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from psycopg_pool import AsyncConnectionPool

from telemetry_core.metrics import SKETCHES_COMPACTED
from telemetry_core.stopping import Stopped, sleep_or_stop, until_stopped

# Hours folded per transaction: the hour rows stay locked (ingest transactions of those series wait) for one
# such transaction, a few tens of milliseconds.
CHUNK = 500
# An hour is folded once it has this many pending sketches (or is over): a fold costs a few one-batch merges (it
# deletes and unpacks each pending row; 16 measured the same, 32 worse: docs/benchmarks.md, sixteenth session), and
# a percentile reads about this many more rows per series-hour at most.
MIN_PENDING = 8
_COMPACT = "SELECT telemetry.compact_hour_sketches(%s, %s, %s)"


async def compact_hour_sketches(
    pool: AsyncConnectionPool, chunk: int = CHUNK, min_pending: int = MIN_PENDING, closed_before: datetime | None = None
) -> int:
    """Fold the pending sketches of hours with ``min_pending`` of them or before ``closed_before``; returns the hours.

    ``closed_before`` defaults to the start of the hour before the current one: an hour over for a whole hour gets
    nothing more but late points, so its few pending sketches are folded too. ``chunk`` hours per transaction.
    """
    if closed_before is None:
        closed_before = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    total = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(_COMPACT, (chunk, min_pending, closed_before))).fetchone()
        taken = int(row[0]) if row else 0
        total += taken
        SKETCHES_COMPACTED.inc(taken)
        if taken < chunk:
            return total


async def compact_periodically(
    pool: AsyncConnectionPool, interval_s: float, log: structlog.stdlib.BoundLogger, stop: asyncio.Event
) -> None:
    """Fold the pending sketches every ``interval_s`` until the stop signal; a failed round is logged, retried next."""
    while not await sleep_or_stop(stop, interval_s):
        try:
            hours = await until_stopped(stop, compact_hour_sketches(pool))
            if hours:
                log.debug("hour_sketches_compacted", hours=hours)
        except Stopped:
            return
        except Exception as exc:  # reads merge what is still pending: nothing is wrong meanwhile, only slower
            log.warning("hour_sketch_compaction_failed", error=str(exc))
