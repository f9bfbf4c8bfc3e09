"""Notices from ingest_worker to projection_worker."""

from datetime import datetime

import msgspec

from telemetry_schemas.base import StreamMessage
from telemetry_schemas.values import Point


class MetricStored(StreamMessage, frozen=True):
    """What one committed batch wrote for one metric of one device."""

    metric_name: str
    count: int
    first_time: datetime
    last_time: datetime
    latest: Point
    # UTC minute floors holding numeric points of this batch: the rollup buckets to recompute.
    minutes: list[datetime] = []
    # (UTC hour floor, points of this metric in that hour that this message inserted): overwrites are not
    # in it, so the stats read model counts each distinct point once. None in notices from before it existed.
    new_points: list[tuple[datetime, int]] | None = None


class MessageStoring(msgspec.Struct, frozen=True, array_like=True):
    """One POINTS message of a transaction about to commit: its device, metrics, first and last instant, sequence.

    The span covers all its metrics (a superset for each): computing it per metric cost the worker ~1 µs a point.
    """

    device_id: str
    metric_names: list[str]
    first_time: datetime
    last_time: datetime
    points_seq: int


class PointsStoring(msgspec.Struct, frozen=True):
    """Core NATS, before an ingest transaction commits (not stored): the series and ranges it writes.

    Each message is followed by a PointsStored notice of the same POINTS sequence once committed, or by nothing
    (the transaction failed; the message is redelivered and announced again).
    """

    messages: list[MessageStoring]


class PointsStored(StreamMessage, frozen=True):
    """A batch from POINTS is committed to PostgreSQL (one notice per POINTS message).

    Published inside a StoredNotices message (one per ingest transaction); a message of this shape alone is a
    notice from a writer before StoredNotices existed, still read (``decode_notices``).
    """

    device_id: str
    points_seq: int
    stored_at: datetime
    metrics: list[MetricStored]
    # When JetStream accepted the POINTS message (its stream timestamp): stored_at - accepted_at is the
    # accept -> stored latency. stored_at is taken after the commit.
    accepted_at: datetime | None = None
    # True: the ingest transaction already merged these points into rollup_minute / rollup_hour (migration
    # 0013). False in notices from writers before that: the rollups projection recomputes their minutes.
    rollups_applied: bool = False


class StoredNotices(StreamMessage, frozen=True):
    """One ingest transaction's notices, in POINTS order: one NOTICES message instead of one per POINTS message.

    Each message a consumer fetches costs a delivery, a decode and an acknowledgement in every consumer of
    NOTICES (three projections, every gateway's cache feed) and a store and an fsync in nats-server: per POINTS
    message, that was about a third of the CPU a single-point request costs the whole system
    (docs/benchmarks-single-point.md). One transaction's notices are stored together, so they travel together.
    Published on ``topology.STORED_BATCH_SUBJECT``; large transactions are split into several such messages
    (``ingest_worker/notices.py``, under the broker's payload limit).
    """

    notices: list[PointsStored] = []
