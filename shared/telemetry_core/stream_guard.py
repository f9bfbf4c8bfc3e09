"""Is a consumer's checkpoint still a position in its stream? If not, the consumer stops: never skip silently.

A checkpoint is a stream sequence, and consumers skip what is at or below it (a redelivery after a lost
ack). That is only right while the stream is the one the checkpoint was taken on, holding at least that
many messages. A stream deleted and created again, restored from an older backup, or one that lost its
unsynced tail in a power loss (JetStream without ``sync_interval: always``), numbers *new* messages with
sequences the checkpoint already covers: a consumer that trusted it would skip them, and the read model
would silently miss definitions, rules or alerts.

So each checkpoint row records the creation time of its stream (JetStream's ``stream_info.created``), and
the guard compares: at start-up, after a NATS reconnect or a failed fetch, every ``recheck_s``, and — the
one moment a wrong checkpoint does harm — right before a handler skips a message at or below it. A
mismatch records why in the checkpoint row (``halted``: /health/detailed shows it), logs an error naming
the fix, and raises ``StreamChanged``; the consumer runtime then stops consuming.
"""

import time
from datetime import datetime

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from telemetry_core.checkpoints import Position, halt, read_position, record_stream
from telemetry_core.errors import TelemetryError


class StreamChanged(TelemetryError):
    """The stream no longer holds the checkpoint's position: stop consuming (the message says what to do)."""


def stream_problem(stream: str, position: Position, created: datetime, last_seq: int) -> str | None:
    """Why ``position`` is not a position in ``stream`` as it is now (created at ``created``, ending at ``last_seq``).

    None when it is. A checkpoint at 0 has applied nothing, so any stream is fine for it.
    """
    if position.last_seq == 0:
        return None
    if position.stream_created is not None and position.stream_created != created:
        return (
            f"stream {stream} was created again (created {created.isoformat()}, the checkpoint was taken on the "
            f"stream created {position.stream_created.isoformat()}): checkpoint {position.last_seq} counts in "
            "sequences of a stream that is gone"
        )
    if last_seq < position.last_seq:
        return (
            f"stream {stream} ends at sequence {last_seq}, below checkpoint {position.last_seq}: it lost messages "
            "that were applied (unsynced writes lost in a crash, or restored from an older copy)"
        )
    return None


class StreamGuard:
    """Checks one consumer's checkpoint against its stream; used by the consumer runtime and the handler."""

    def __init__(self, nc: Client, js: JetStreamContext, pool: AsyncConnectionPool, *, consumer: str, stream: str,
                 fix: str, log: structlog.stdlib.BoundLogger, recheck_s: float = 30.0) -> None:  # fmt: skip
        """``consumer`` is the checkpoint's name (projection or engine); ``fix`` tells an operator what to run."""
        self._nc, self._js, self._pool, self._log = nc, js, pool, log
        self.consumer, self.stream, self.fix, self.recheck_s = consumer, stream, fix, recheck_s
        self._created: datetime | None = None  # of the stream as last checked
        self._checked_at = 0.0
        self._reconnects = self._nc_reconnects()
        self._suspect = False

    def _nc_reconnects(self) -> int:
        return int(self._nc.stats.get("reconnects", 0))

    def suspect(self) -> None:
        """Check again before the next batch (a fetch failed: the stream may have gone and come back)."""
        self._suspect = True

    def due(self) -> bool:
        """Whether a check is due: after a reconnect or a suspect failure, and every ``recheck_s``."""
        return (
            self._suspect
            or self._nc_reconnects() != self._reconnects
            or time.monotonic() - self._checked_at >= self.recheck_s
        )

    async def _stream_now(self) -> tuple[datetime, int]:
        info = await self._js.stream_info(self.stream)
        if info.created is None:  # every server since 2.2 sends it; without it the guard cannot work
            raise StreamChanged(f"stream {self.stream}: the server did not say when it was created")
        return info.created, int(info.state.last_seq)

    def _stopped(self, problem: str) -> StreamChanged:
        return StreamChanged(
            f"{self.consumer} stopped: {problem}. Nothing more is applied from {self.stream} until it is rebuilt "
            f"from the stream as it is now: {self.fix}"
        )

    async def check(self) -> None:
        """Compare the stored checkpoint with the stream; record the stream when the checkpoint has none yet.

        Raises StreamChanged (after recording the halt and logging it) when they disagree, or when a halt is
        recorded: only ``telemetry replay`` (which deletes the checkpoint row) lifts it.
        """
        reconnects = self._nc_reconnects()
        created, last_seq = await self._stream_now()
        async with self._pool.connection() as conn, conn.transaction():
            position = await read_position(conn, self.consumer, self.stream)
            if position.halted is not None:
                # Stays halted until a replay resets the checkpoint: a stream that lost its tail and has since
                # grown past the checkpoint again looks fine now, and its new messages would be skipped.
                self._log.error("consumer_halted", consumer=self.consumer, stream=self.stream,
                                reason=position.halted, fix=self.fix)  # fmt: skip
                raise StreamChanged(position.halted)
            problem = stream_problem(self.stream, position, created, last_seq)
            if problem is None and position.stream_created != created:
                await record_stream(conn, self.consumer, self.stream, created)
        if problem is not None:
            stopped = self._stopped(problem)
            await self.halt(stopped)
            raise stopped
        self._created, self._checked_at, self._reconnects, self._suspect = created, time.monotonic(), reconnects, False

    async def before_skip(self, checkpoint: int, recorded: datetime | None = None) -> None:
        """Called by a handler about to skip messages at or below ``checkpoint``: raise StreamChanged if wrong.

        ``recorded`` is the stream creation time stored with the checkpoint (the one last checked when None).
        The caller may hold its checkpoint row locked: this reads NATS only, and the runtime records the halt.
        """
        created, last_seq = await self._stream_now()
        position = Position(checkpoint, recorded or self._created)
        problem = stream_problem(self.stream, position, created, last_seq)
        if problem is not None:
            raise self._stopped(problem)

    async def halt(self, stopped: StreamChanged) -> None:
        """Record the halt for /health/detailed (best effort: the log line is the other witness) and log it."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await halt(conn, self.consumer, self.stream, str(stopped))
        except Exception as exc:
            self._log.warning("halt_not_recorded", error=repr(exc))
        self._log.error("consumer_stopped_stream_changed", consumer=self.consumer, stream=self.stream,
                        reason=str(stopped), fix=self.fix)  # fmt: skip
