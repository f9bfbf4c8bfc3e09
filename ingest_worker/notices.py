"""After commit: a PointsStored notice per POINTS message, and the platform's data.received event."""

import asyncio
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from ingest_worker.writer import Inserted
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import MSG_ID, REQUEST_ID
from telemetry_core.topology import stored_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.integration import DATA_RECEIVED, DataReceived
from telemetry_schemas.notices import MetricStored, PointsStored
from telemetry_schemas.values import Point

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)


def _metric_stored(name: str, group: list[Point], new_points: list[tuple[datetime, int]] | None) -> MetricStored:
    """One metric's summary; a single pass over its points (this runs for every point the worker stores)."""
    first = newest = group[0]
    first_t = newest_t = first.timestamp
    minutes: set[int] = set()
    for point in group:
        t = point.timestamp
        if t < first_t:
            first_t = t
        if t >= newest_t:  # >=: of equal timestamps the later one in the message wins (later write wins)
            newest, newest_t = point, t
        kind = type(point.value)
        # int / float exactly (bool is not numeric): value_type()'s INTEGER and FLOAT, without the call.
        if kind is float or kind is int:
            minutes.add((t - _EPOCH) // _MINUTE)  # exact integer minute since the epoch (UTC), any offset
    return MetricStored(
        metric_name=name,
        count=len(group),
        first_time=first_t,
        last_time=newest_t,
        latest=newest,
        minutes=[_EPOCH + m * _MINUTE for m in sorted(minutes)],
        new_points=new_points,
    )


def build_notice(
    device_id: str,
    points_seq: int,
    points: list[Point],
    inserted: Inserted | None = None,
    accepted_at: datetime | None = None,
    *,
    rollups_applied: bool = False,
) -> PointsStored:
    """Summarise one message's points per metric: count, time span, the newest point and the new points per hour.

    Call after the commit: ``stored_at`` is now, and ``inserted`` is what the upsert reported;
    ``rollups_applied``: that transaction also merged the points into rollup_minute / rollup_hour (write_rows).
    """
    by_metric: dict[str, list[Point]] = {}
    for point in points:
        group = by_metric.get(point.metric_name)
        if group is None:
            by_metric[point.metric_name] = [point]
        else:
            group.append(point)
    metrics = [
        _metric_stored(name, group, None if inserted is None else sorted(inserted.get((points_seq, name), [])))
        for name, group in by_metric.items()
    ]
    return PointsStored(
        device_id=device_id,
        points_seq=points_seq,
        stored_at=datetime.now(UTC),
        metrics=metrics,
        accepted_at=accepted_at,
        rollups_applied=rollups_applied,
    )


async def publish_notices(
    js: JetStreamContext, notices: list[PointsStored], request_ids: dict[int, str] | None = None, timeout_s: float = 5.0
) -> None:
    """Publish and await every PubAck; the msg id makes a re-publish after a crash a no-op.

    ``request_ids`` (POINTS sequence -> X-Request-Id) go on the notices' headers, so the projections log them.
    """
    ids = request_ids or {}
    await asyncio.gather(
        *(
            js.publish(
                stored_subject(n.device_id),
                json_encoder.encode(n),
                timeout=timeout_s,
                headers={MSG_ID: f"stored:{n.points_seq}", **_request_header(ids.get(n.points_seq))},
            )
            for n in notices
        )
    )


def _request_header(request_id: str | None) -> dict[str, str]:
    return {REQUEST_ID: request_id} if request_id else {}


def data_received(notice: PointsStored) -> DataReceived:
    """The platform event of one stored batch (one POINTS message)."""
    return DataReceived(
        device_id=notice.device_id,
        metrics_count=len(notice.metrics),
        points_count=sum(m.count for m in notice.metrics),
        timestamp=notice.stored_at,
    )


async def publish_data_received(events: EventsOut, notices: list[PointsStored]) -> None:
    """One ``<prefix>.data.received`` per stored batch, best effort: a failure never blocks ingestion (NFR-005)."""
    for notice in notices:
        await events.publish(DATA_RECEIVED, data_received(notice))
