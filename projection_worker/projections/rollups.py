"""Read model: the per-metric hourly rollup over all devices; and rollups of notices from older writers.

rollup_minute / rollup_hour are written by the ingest transaction itself (additively, recomputing from
raw only overwritten minutes: migration 0013). What is left here:

* rollup_metric_hour (migration 0014): every (metric, hour) a notice touched is recomputed from
  rollup_hour, once per batch. A notice is published after its transaction committed, so the
  recompute sees its points; recomputing (not adding) makes a redelivered notice harmless.
* a notice without ``rollups_applied`` (written by an ingest worker from before 0013, still in the
  stream after an upgrade): its minutes are recomputed from raw points, as this projection always did.
"""

from datetime import UTC, datetime
from itertools import chain
from typing import Any

from psycopg import AsyncCursor

from telemetry_core.topology import ROLLUP_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import decode_notices
from telemetry_schemas.notices import PointsStored

NAME = "rollups"
SPEC: ConsumerSpec = ROLLUP_PROJECTION
# rollup_minute / rollup_hour are the ingest transaction's: a replay must not empty them.
TABLES: tuple[str, ...] = ("telemetry.rollup_metric_hour",)

_REFRESH = "SELECT telemetry.refresh_rollups(%s::text[], %s::text[], %s::timestamptz[])"
_REFRESH_METRIC_HOURS = "SELECT telemetry.refresh_metric_hours(%s::text[], %s::timestamptz[])"
# Larger batches coalesce more (a bucket touched by many notices is recomputed once per batch), but
# one call must stay well inside the statement timeout: buckets go to PostgreSQL in chunks.
BATCH = 512
# Fewer, larger transactions under a steady trickle of notices (each batch is one transaction and one recompute per
# touched hour); an across-device hourly answer may be this much later. Measured: docs/benchmarks-single-point.md.
LINGER_S = 0.1
CHUNK = 20_000


def decode(data: bytes) -> list[PointsStored]:
    """The notices of one NOTICES message (usually one ingest transaction's)."""
    return decode_notices(data)


def _hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def apply(cur: AsyncCursor[Any], messages: list[list[PointsStored]]) -> None:
    """Recompute the legacy notices' minutes from raw, then every touched (metric, hour) from rollup_hour."""
    legacy: set[tuple[str, str, Any]] = set()
    hours: set[tuple[str, datetime]] = set()
    for notice in chain.from_iterable(messages):
        for metric in notice.metrics:
            hours.update((metric.metric_name, _hour(minute)) for minute in metric.minutes)
            if not notice.rollups_applied:
                legacy.update((notice.device_id, metric.metric_name, minute) for minute in metric.minutes)
    ordered = sorted(legacy)
    for start in range(0, len(ordered), CHUNK):
        devices, metrics, minutes = zip(*ordered[start : start + CHUNK], strict=True)
        await cur.execute(_REFRESH, (list(devices), list(metrics), list(minutes)))
    pairs = sorted(hours)
    for start in range(0, len(pairs), CHUNK):
        names, buckets = zip(*pairs[start : start + CHUNK], strict=True)
        await cur.execute(_REFRESH_METRIC_HOURS, (list(names), list(buckets)))
