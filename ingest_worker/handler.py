"""One fetched batch of POINTS messages: signed ones → rows → notices; direct ones admitted; rejects reported."""

import asyncio
from datetime import datetime

import psycopg
import psycopg.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from ingest_worker.notices import build_notice, publish_data_received, publish_notices
from ingest_worker.rows import RowSet
from ingest_worker.storing import announce_storing
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.consumer_runtime import Rejected
from telemetry_core.errors import PermanentError, TransientError
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import MSG_ID, REQUEST_ID, SIGNATURE
from telemetry_core.metrics import POINTS_NEW, POINTS_REJECTED, POINTS_WRITTEN
from telemetry_core.points_validator import PointsValidator, Unadmitted, points_body
from telemetry_core.topology import points_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.values import Point

WORKER = "ingest"


def _accepted_at(msg: Msg) -> datetime | None:
    """When JetStream stored the message (the moment the publisher got its PubAck, give or take)."""
    try:
        return msg.metadata.timestamp
    except Exception:
        return None


class IngestHandler:
    """Writes a batch of messages in one transaction; acks (by the runtime) only after commit."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        js: JetStreamContext,
        events: EventsOut,
        log: structlog.stdlib.BoundLogger,
        validator: PointsValidator,
        nc: Client,
    ) -> None:
        """``nc``: where the transaction's series are announced before it commits (ingest_worker/storing.py)."""
        self._nc = nc
        self._pool = pool
        self._events = events
        self._js = js
        self._log = log
        self._validator = validator
        self.partitions = PartitionCache()
        self.points_written = 0

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        """Process ``msgs``; return what can never be applied, whole messages or points (the runtime dead-letters)."""
        rejected: list[Rejected] = []
        admitting: list[tuple[Msg, Unadmitted]] = []
        rows = RowSet()
        stored: list[tuple[str, int, list[Point], datetime | None]] = []
        request_ids: dict[int, str] = {}  # POINTS sequence -> the request that sent it, carried on its notice
        for msg in msgs:
            verdict = self._validator.read(msg)
            if isinstance(verdict, str):
                rejected.append(Rejected(msg, verdict))
                continue
            if isinstance(verdict, Unadmitted):
                admitting.append((msg, verdict))
                continue
            device_id, points = verdict.device_id, verdict.points
            if not points:
                continue
            seq = msg.metadata.sequence.stream
            rows.add_points(device_id, points, seq)
            stored.append((device_id, seq, points, _accepted_at(msg)))
            if msg.headers and msg.headers.get(REQUEST_ID):
                request_ids[seq] = msg.headers[REQUEST_ID]
        if len(rows):
            # Announced while the rows are copied; awaited before COMMIT (ingest_worker/storing.py).
            announced = asyncio.get_running_loop().create_task(
                self._announce([(d, seq, pts) for d, seq, pts, _ in stored])
            )
            announced.add_done_callback(_retrieved)
            try:
                async with self._pool.connection() as conn:
                    await self.partitions.ensure(conn, rows.days())
                    inserted = await write_rows(conn, rows.rows(), before_commit=announced)
            except psycopg.errors.CheckViolation as exc:
                # "no partition of relation points found for row": a partition we cached as existing is gone
                # (dropped by retention, or lost in a database crash). Forget the cache and retry the batch.
                self.partitions.known.clear()
                raise TransientError(f"partition missing, will recreate: {exc}") from exc
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                # The data itself is unstorable: retrying cannot help (the loop isolates the message).
                raise PermanentError(f"PostgreSQL rejected the points: {exc}") from exc
            self.points_written += len(rows)
            POINTS_WRITTEN.inc(len(rows))
            POINTS_NEW.inc(sum(n for hours in inserted.values() for _, n in hours))
            # Built after the commit: stored_at is the commit time, and the upsert told which points are new.
            notices = [build_notice(d, seq, pts, inserted, at, rollups_applied=True) for d, seq, pts, at in stored]
            await publish_notices(self._js, notices, request_ids)
            await publish_data_received(self._events, notices)
        for msg, unadmitted in admitting:
            bad_points = await self._admit(msg, unadmitted)
            if bad_points is not None:
                rejected.append(bad_points)
        return rejected

    async def _announce(self, batches: list[tuple[str, int, list[Point]]]) -> None:
        try:
            await announce_storing(self._nc, batches)
        except Exception as exc:  # NATS away: the acks would fail too; the transaction rolls back, the batch retries
            raise TransientError(f"could not announce the batch to the gateways: {exc!r}") from exc

    async def _admit(self, msg: Msg, unadmitted: Unadmitted) -> Rejected | None:
        """A directly published message: its good points come back signed; its bad ones are returned for the DLQ.

        Nothing consumes an unsigned message's points, so the one verdict taken here (against the
        definitions this worker knows now) is what the ingest worker stores and the alert engine
        evaluates. The re-published message's id is derived from this one's sequence: a redelivery
        after a crash re-publishes a duplicate that JetStream drops.
        """
        errors, raws = unadmitted.errors, unadmitted.raws
        bad_indices = {e.index for e in errors}
        good = [bytes(raw) for i, raw in enumerate(raws) if i not in bad_indices]
        if good:
            body = points_body(unadmitted.device_id, good, None, None)
            headers = {SIGNATURE: self._validator.signature(body), MSG_ID: f"admitted:{msg.metadata.sequence.stream}"}
            await self._js.publish(points_subject(unadmitted.device_id), body, headers=headers, timeout=5.0)
        if not errors:
            return None
        POINTS_REJECTED.inc(len(errors))
        reason = "; ".join(f"{e.field}: {e.error}" for e in errors)
        bad = json_encoder.encode([raws[e.index] for e in errors])
        # The runtime dead-letters the bad points and acks the message: its good points were re-published above.
        return Rejected(msg, reason, payload=bad, rest_applied=True)


def _retrieved(task: "asyncio.Future[None]") -> None:
    """An announcement whose transaction failed first is never awaited: take its outcome so asyncio keeps quiet."""
    if not task.cancelled():
        task.exception()
