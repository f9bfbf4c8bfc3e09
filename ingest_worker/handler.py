"""One fetched batch of POINTS messages: decode → rows → write → notices; reports rejects."""

import msgspec
import psycopg
import psycopg.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from ingest_worker.notices import build_notice, publish_data_received, publish_notices
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.consumer_runtime import Rejected
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.errors import PermanentError, TransientError
from telemetry_core.headers import VALIDATED
from telemetry_core.topology import device_of_points_subject
from telemetry_schemas.codecs import (
    PointError,
    decode_points,
    json_encoder,
    record_points_decoder,
    validated_points_decoder,
)
from telemetry_schemas.notices import PointsStored
from telemetry_schemas.values import Point

WORKER = "ingest"


class IngestHandler:
    """Writes a batch of messages in one transaction; acks (by the runtime) only after commit."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        nc: Client,
        js: JetStreamContext,
        event_prefix: str,
        log: structlog.stdlib.BoundLogger,
        definitions: DefinitionsCache,
    ) -> None:
        self._pool = pool
        self._nc = nc
        self._js = js
        self._prefix = event_prefix
        self._log = log
        self._definitions = definitions
        self.partitions = PartitionCache()
        self.points_written = 0

    def _decode(self, msg: Msg) -> tuple[str, list[Point], list[PointError], list[msgspec.Raw]] | str:
        """(device, valid points, errors, raw points) or the reason the whole message is rejected."""
        if msg.headers and msg.headers.get(VALIDATED):
            # The gateway validated every point: one typed decode of the whole message is enough.
            try:
                typed = validated_points_decoder.decode(msg.data)
            except msgspec.DecodeError:
                pass  # fall through to the careful path, which says exactly what is wrong
            else:
                if device_of_points_subject(msg.subject) == typed.device_id:
                    return typed.device_id, typed.points, [], []
        try:
            command = record_points_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            return f"not a RecordPoints message: {exc}"
        subject_device = device_of_points_subject(msg.subject)
        if subject_device != command.device_id:
            return f"device_id {command.device_id!r} does not match subject {msg.subject!r}"
        # Points the gateway published were validated there; others are checked against the definitions here.
        from_gateway = bool(msg.headers and msg.headers.get(VALIDATED))
        check = None if from_gateway else self._definitions.check
        points, errors = decode_points(command.points, "points", check, msg.data)
        return command.device_id, points, errors, command.points

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        """Process ``msgs``; return what can never be applied, whole messages or points (the runtime dead-letters)."""
        rejected: list[Rejected] = []
        partial: list[tuple[Msg, list[PointError], list[msgspec.Raw]]] = []
        rows = RowSet()
        notices: list[PointsStored] = []
        for msg in msgs:
            decoded = self._decode(msg)
            if isinstance(decoded, str):
                rejected.append(Rejected(msg, decoded))
                continue
            device_id, points, errors, raws = decoded
            if errors:
                partial.append((msg, errors, raws))
            if not points:
                continue
            seq = msg.metadata.sequence.stream
            for point in points:
                rows.add(device_id, point, seq)
            notices.append(build_notice(device_id, seq, points))
        if len(rows):
            try:
                async with self._pool.connection() as conn:
                    await self.partitions.ensure(conn, rows.days())
                    await write_rows(conn, rows.rows())
            except psycopg.errors.CheckViolation as exc:
                # "no partition of relation points found for row": a partition we cached as existing is gone
                # (dropped by retention, or lost in a database crash). Forget the cache and retry the batch.
                self.partitions.known.clear()
                raise TransientError(f"partition missing, will recreate: {exc}") from exc
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                # The data itself is unstorable: retrying cannot help (the loop isolates the message).
                raise PermanentError(f"PostgreSQL rejected the points: {exc}") from exc
            self.points_written += len(rows)
            await publish_notices(self._js, notices)
            await publish_data_received(self._nc, self._prefix, notices)
        for msg, errors, raws in partial:
            # The good points of this message are committed; only the bad ones go to the DLQ.
            reason = "; ".join(f"{e.field}: {e.error}" for e in errors)
            bad = json_encoder.encode([raws[e.index] for e in errors])
            rejected.append(Rejected(msg, reason, payload=bad, rest_applied=True))
        return rejected
