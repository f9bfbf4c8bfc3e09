"""Per batch: BEGIN; skip messages with seq ≤ checkpoint; apply; advance checkpoint; COMMIT; then ack."""

import asyncio
import contextlib
from typing import Any, Protocol

import msgspec
from nats.aio.msg import Msg
from psycopg import AsyncCursor, OperationalError
from psycopg.errors import QueryCanceled
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from projection_worker.checkpoints import advance_checkpoint, read_checkpoint
from telemetry_core.consumer_loop import Rejected
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
    """The consumer-loop handler for one projection."""

    def __init__(self, pool: AsyncConnectionPool, projection: Projection) -> None:
        self._pool = pool
        self._projection = projection
        self.applied = 0

    async def _apply(self, decoded: list[tuple[int, Any]]) -> None:
        name, stream = self._projection.NAME, self._projection.SPEC.stream
        async with self._pool.connection() as conn, conn.transaction():
            checkpoint = await read_checkpoint(conn, name, stream)
            fresh = [message for seq, message in decoded if seq > checkpoint]
            if fresh:
                async with conn.cursor() as cur:
                    await self._projection.apply(cur, fresh)
            await advance_checkpoint(conn, name, stream, max(checkpoint, max(seq for seq, _ in decoded)))
        self.applied += len(fresh)

    async def _apply_in_order(self, decoded: list[tuple[int, Any]], msgs: list[Msg]) -> None:
        """Apply, retrying the same messages until they succeed: never move past a failed one.

        The checkpoint is a high-water mark, so letting newer messages commit while older ones wait for
        redelivery would make the older ones look applied and skip them (silent loss). While PostgreSQL
        is unreachable this waits (telling JetStream the messages are in progress); any other error is
        retried a few times and then raised, so the caller can isolate the message that causes it.
        """
        failures = 0
        while True:
            try:
                await self._apply(decoded)
                return
            except Exception as exc:
                unreachable = isinstance(exc, OperationalError | PoolTimeout) and not isinstance(exc, QueryCanceled)
                if not unreachable:
                    failures += 1
                    if failures >= _ATTEMPTS:
                        raise
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
                await asyncio.sleep(min(0.2 * 2**failures, 5.0) if not unreachable else 1.0)

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        """Apply the new messages of ``msgs`` exactly once, with the checkpoint in the same transaction.

        A batch that keeps failing is applied one message at a time, in order; a message that still
        fails is returned as rejected (the loop dead-letters it with the reason) — never skipped silently.
        """
        name = self._projection.NAME
        rejected: list[Rejected] = []
        decoded: list[tuple[int, Any]] = []
        by_seq: dict[int, Msg] = {}
        for msg in msgs:
            try:
                seq = msg.metadata.sequence.stream
                decoded.append((seq, self._projection.decode(msg.data)))
                by_seq[seq] = msg
            except msgspec.DecodeError as exc:
                rejected.append(Rejected(msg, f"undecodable for projection {name}: {exc}"))
        if not decoded:
            return rejected
        try:
            await self._apply_in_order(decoded, msgs)
        except Exception:
            for seq, message in decoded:
                try:
                    await self._apply_in_order([(seq, message)], [by_seq[seq]])
                except Exception as exc:
                    rejected.append(Rejected(by_seq[seq], f"projection {name} failed {_ATTEMPTS} times: {exc!r}"))
        return rejected


# Attempts per batch (and then per message) before a message is dead-lettered; ~3 s of back-off in all.
_ATTEMPTS = 5
