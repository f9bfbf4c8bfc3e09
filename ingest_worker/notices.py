"""After commit: a PointsStored notice per POINTS message, sent together as StoredNotices; data.received events."""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from ingest_worker.writer import Inserted
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import MSG_ID, REQUEST_ID
from telemetry_core.topology import STORED_BATCH_SUBJECT
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.integration import DATA_RECEIVED, DataReceived
from telemetry_schemas.notices import MetricStored, PointsStored
from telemetry_schemas.values import Point

# Largest StoredNotices message built: well under nats-server's default max_payload (1 MiB). One notice is at
# most a few tens of kB (a 1000-point message: per metric its latest point and the minutes it touched), so a
# transaction's notices take one message unless it is very large; a larger one is split into several.
MAX_NOTICES_BYTES = 256 * 1024
# Request ids carried on one message's header (comma-separated, for the projections' log lines): a bound on its size.
MAX_REQUEST_IDS = 64
_OPEN, _CLOSE = b'{"notices":[', b"]}"

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


def notice_messages(
    notices: list[PointsStored],
    request_ids: dict[int, str] | None = None,
    *,
    id_prefix: str = "stored",
    max_bytes: int = MAX_NOTICES_BYTES,
) -> list[tuple[bytes, dict[str, str]]]:
    """(body, headers) of the StoredNotices messages carrying ``notices``, in order, each under ``max_bytes``.

    The message id is ``id_prefix`` and the POINTS sequences the message covers, so publishing the same notices
    again (a retry, a redelivered batch after a crash) is de-duplicated by JetStream. A redelivered batch grouped
    differently (after a crash the runtime handles redelivered messages one at a time) publishes its notices
    again under another id. Latest values and rollups come out the same (their projections are idempotent); the
    re-run upsert reports the rows the message owns as its inserts, so the statistics would count those messages
    twice: the device_stats projection counts each POINTS sequence once (projection_worker/stats_guard.py).
    ``request_ids`` (POINTS sequence -> X-Request-Id) go on the header, comma-separated, for the projections' logs.
    """
    ids = request_ids or {}
    messages: list[tuple[bytes, dict[str, str]]] = []
    parts: list[bytes] = []
    seqs: list[int] = []
    size = len(_OPEN) + len(_CLOSE)

    def close() -> None:
        digest = hashlib.blake2b(",".join(map(str, seqs)).encode(), digest_size=8).hexdigest()
        headers = {MSG_ID: f"{id_prefix}:{seqs[0]}-{seqs[-1]}:{len(seqs)}:{digest}"}
        rids = [ids[s] for s in seqs if s in ids][:MAX_REQUEST_IDS]
        if rids:
            headers[REQUEST_ID] = ",".join(rids)
        messages.append((_OPEN + b",".join(parts) + _CLOSE, headers))

    for notice in notices:
        part = json_encoder.encode(notice)
        if parts and size + len(part) + 1 > max_bytes:
            close()
            parts, seqs, size = [], [], len(_OPEN) + len(_CLOSE)
        parts.append(part)
        seqs.append(notice.points_seq)
        size += len(part) + 1
    if parts:
        close()
    return messages


async def publish_notices(
    js: JetStreamContext,
    notices: list[PointsStored],
    request_ids: dict[int, str] | None = None,
    timeout_s: float = 5.0,
    *,
    id_prefix: str = "stored",
) -> None:
    """Publish the notices as StoredNotices messages (usually one) and await every PubAck."""
    await asyncio.gather(
        *(
            js.publish(STORED_BATCH_SUBJECT, body, timeout=timeout_s, headers=headers)
            for body, headers in notice_messages(notices, request_ids, id_prefix=id_prefix)
        )
    )


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
