"""Read model: statistics per (device, metric), per hour and per minute of storing (E6-US1/US2), from notices.

Counts are added, never recomputed: each notice says how many of its points were *inserted* (the ingest
worker's upsert knows, see ``ingest_worker/writer.py``), so an overwrite adds nothing and a late point is
added to the hour of its timestamp. The checkpoint (written with the rows) makes a redelivered notice a no-op,
and ``stats_guard`` a notice published again after an ingest worker's crash (under another message id).
"""

from datetime import UTC, datetime
from itertools import chain
from typing import Any

from psycopg import AsyncCursor

from projection_worker import stats_guard
from telemetry_core.topology import DEVICE_STATS_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import decode_notices
from telemetry_schemas.notices import PointsStored

NAME = "device_stats"
SPEC: ConsumerSpec = DEVICE_STATS_PROJECTION
TABLES: tuple[str, ...] = (
    "telemetry.stats_series",
    "telemetry.stats_hour",
    "telemetry.stats_service_hour",
    "telemetry.stats_ingest_minute",
    stats_guard.TABLE,
)
BATCH = 512
# Fewer, larger transactions under a steady trickle of notices: statistics may be this much later.
LINGER_S = 0.1

_SERIES = """
INSERT INTO telemetry.stats_series AS s (device_id, metric_name, points, last_time, last_stored_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (device_id, metric_name) DO UPDATE SET points = s.points + EXCLUDED.points,
    last_time = greatest(s.last_time, EXCLUDED.last_time),
    last_stored_at = greatest(s.last_stored_at, EXCLUDED.last_stored_at)
"""
_HOUR = """
INSERT INTO telemetry.stats_hour AS h (device_id, metric_name, hour, points) VALUES (%s, %s, %s, %s)
ON CONFLICT (device_id, metric_name, hour) DO UPDATE SET points = h.points + EXCLUDED.points
"""
_SERVICE_HOUR = """
INSERT INTO telemetry.stats_service_hour AS h (hour, points) VALUES (%s, %s)
ON CONFLICT (hour) DO UPDATE SET points = h.points + EXCLUDED.points
"""
_MINUTE = """
INSERT INTO telemetry.stats_ingest_minute AS m (minute, messages, points, latency_messages, latency_ms_sum)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (minute) DO UPDATE SET messages = m.messages + EXCLUDED.messages, points = m.points + EXCLUDED.points,
    latency_messages = m.latency_messages + EXCLUDED.latency_messages,
    latency_ms_sum = m.latency_ms_sum + EXCLUDED.latency_ms_sum
"""


def decode(data: bytes) -> list[PointsStored]:
    """The notices of one NOTICES message (usually one ingest transaction's)."""
    return decode_notices(data)


def _minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


async def apply(cur: AsyncCursor[Any], messages: list[list[PointsStored]]) -> None:
    """Add the batch's new points per series and hour, and its messages per minute of storing.

    The batch is summed in memory first, so each row is written once per batch (in key order: two
    projection worker copies never lock the same rows in opposite orders).
    """
    series: dict[tuple[str, str], list[Any]] = {}
    hours: dict[tuple[str, str, datetime], int] = {}
    service_hours: dict[datetime, int] = {}
    minutes: dict[datetime, list[Any]] = {}
    for notice in await stats_guard.first_counted(cur, list(chain.from_iterable(messages))):
        for metric in notice.metrics:
            key = (notice.device_id, metric.metric_name)
            new = 0
            for hour, count in metric.new_points or ():
                new += count
                hours[(*key, hour)] = hours.get((*key, hour), 0) + count
                service_hours[hour] = service_hours.get(hour, 0) + count
            held = series.get(key)
            if held is None:
                series[key] = [new, metric.last_time, notice.stored_at]
            else:
                held[0] += new
                held[1] = max(held[1], metric.last_time)
                held[2] = max(held[2], notice.stored_at)
        row = minutes.setdefault(_minute(notice.stored_at), [0, 0, 0, 0.0])
        row[0] += 1
        row[1] += sum(m.count for m in notice.metrics)
        if notice.accepted_at is not None:
            row[2] += 1
            row[3] += max(0.0, (notice.stored_at - notice.accepted_at).total_seconds() * 1000)
    if series:
        await cur.executemany(_SERIES, [(*k, *v) for k, v in sorted(series.items())])
    if hours:
        await cur.executemany(_HOUR, [(*k, v) for k, v in sorted(hours.items())])
    if service_hours:
        await cur.executemany(_SERVICE_HOUR, sorted(service_hours.items()))
    if minutes:
        await cur.executemany(_MINUTE, [(k, *v) for k, v in sorted(minutes.items())])
