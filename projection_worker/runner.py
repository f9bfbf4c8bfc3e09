"""Per batch: BEGIN; skip messages with seq ≤ checkpoint; apply; advance checkpoint; COMMIT; then ack.

The checkpoint is a high-water mark, so the runner must never let a newer message commit while an
older one waits: it runs on the consumer runtime with ``ordered=True``, which retries a failing batch
in place, then one message at a time in order, and dead-letters a message that still fails before it
moves on (``telemetry_core.consumer_runtime``). The runner itself only applies and raises.
"""

from typing import Any, Protocol

import msgspec
from nats.aio.msg import Msg
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool

from telemetry_core.checkpoints import advance_checkpoint, read_checkpoint, read_position
from telemetry_core.consumer_runtime import Rejected
from telemetry_core.metrics import PROJECTION_APPLIED
from telemetry_core.stream_guard import StreamGuard
from telemetry_core.topology import ConsumerSpec


class Projection(Protocol):
    """A read model: its name, the consumer feeding it, and how to apply a batch of messages."""

    NAME: str
    SPEC: ConsumerSpec
    TABLES: tuple[str, ...]

    def decode(self, data: bytes) -> Any:
        """Decode one message (raise msgspec.DecodeError when it cannot be)."""

    async def apply(self, cur: AsyncCursor[Any], messages: list[Any]) -> None:
        """Apply decoded messages in stream order inside the open transaction."""


class ProjectionRunner:
    """The consumer-runtime handler for one projection."""

    def __init__(self, pool: AsyncConnectionPool, projection: Projection, guard: StreamGuard | None = None) -> None:
        """``guard`` is asked before any message at or below the checkpoint is skipped (stream_guard.py)."""
        self._pool = pool
        self._guard = guard
        self._projection = projection
        self.applied = 0
        self._applied_metric = PROJECTION_APPLIED.labels(projection.NAME)

    async def _apply(self, decoded: list[tuple[int, Any]]) -> None:
        name, stream = self._projection.NAME, self._projection.SPEC.stream
        async with self._pool.connection() as conn, conn.transaction():
            checkpoint = await read_checkpoint(conn, name, stream, for_update=True)
            fresh = [message for seq, message in decoded if seq > checkpoint]
            if len(fresh) < len(decoded) and self._guard is not None:
                # Skipping is right for a redelivery, and silent loss if the stream changed under the checkpoint.
                position = await read_position(conn, name, stream)
                await self._guard.before_skip(checkpoint, position.stream_created)
            if fresh:
                async with conn.cursor() as cur:
                    await self._projection.apply(cur, fresh)
            await advance_checkpoint(conn, name, stream, max(checkpoint, max(seq for seq, _ in decoded)))
        self.applied += len(fresh)
        self._applied_metric.inc(len(fresh))

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        """Apply the new messages of ``msgs`` exactly once, with the checkpoint in the same transaction.

        Undecodable messages are returned as rejected (the runtime dead-letters them with the reason);
        a failure to apply raises, and the runtime decides what happens next.
        """
        name = self._projection.NAME
        rejected: list[Rejected] = []
        decoded: list[tuple[int, Any]] = []
        for msg in msgs:
            try:
                decoded.append((msg.metadata.sequence.stream, self._projection.decode(msg.data)))
            except msgspec.DecodeError as exc:
                rejected.append(Rejected(msg, f"undecodable for projection {name}: {exc}"))
        if decoded:
            await self._apply(decoded)
        return rejected
