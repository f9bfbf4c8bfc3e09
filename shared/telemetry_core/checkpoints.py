"""projection_checkpoints: how far a read model or engine has applied a stream, in which stream, and any halt.

One place for this SQL: projections and the alert engine write their position in the same transaction as
their rows; the gateway reads it to know when a write is visible (read-your-writes).
"""

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

_READ = "SELECT last_seq FROM telemetry.projection_checkpoints WHERE projection = %s AND stream = %s"
# A checkpoint is a high-water mark: it never moves back, whatever order writers commit in.
_ADVANCE = """
INSERT INTO telemetry.projection_checkpoints (projection, stream, last_seq) VALUES (%s, %s, %s)
ON CONFLICT (projection, stream) DO UPDATE SET last_seq = greatest(projection_checkpoints.last_seq, EXCLUDED.last_seq),
    updated_at = now()
"""


async def read_checkpoint(conn: AsyncConnection, projection: str, stream: str, *, for_update: bool = False) -> int:
    """The last applied stream sequence (0 when none); ``for_update`` locks it until the transaction ends."""
    cur = await conn.execute(_READ + (" FOR UPDATE" if for_update else ""), (projection, stream), prepare=True)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def advance_checkpoint(conn: AsyncConnection, projection: str, stream: str, seq: int) -> None:
    """Record that everything up to ``seq`` is applied."""
    await conn.execute(_ADVANCE, (projection, stream, seq))


_DELETE = "DELETE FROM telemetry.projection_checkpoints WHERE projection = %s AND stream = %s"


async def delete_checkpoint(conn: AsyncConnection, projection: str, stream: str) -> None:
    """Forget the checkpoint (and its stream and halt): the consumer starts from the stream's first message."""
    await conn.execute(_DELETE, (projection, stream))


# -- which stream a checkpoint counts in (stream_guard.py decides; this is its SQL) ------------------------

_READ_POSITION = """
SELECT last_seq, stream_created, halted FROM telemetry.projection_checkpoints WHERE projection = %s AND stream = %s
"""
# Recorded when a checkpoint has none yet (a new consumer, or a row from before 0012).
_RECORD_STREAM = """
INSERT INTO telemetry.projection_checkpoints (projection, stream, last_seq, stream_created) VALUES (%s, %s, 0, %s)
ON CONFLICT (projection, stream) DO UPDATE SET stream_created = EXCLUDED.stream_created, updated_at = now()
"""
_HALT = """
INSERT INTO telemetry.projection_checkpoints (projection, stream, last_seq, halted) VALUES (%s, %s, 0, %s)
ON CONFLICT (projection, stream) DO UPDATE SET halted = EXCLUDED.halted, updated_at = now()
"""
_HALTED = """
SELECT projection, stream, last_seq, halted FROM telemetry.projection_checkpoints WHERE halted IS NOT NULL
ORDER BY projection, stream
"""


@dataclass(frozen=True)
class Position:
    """A checkpoint with the creation time of the stream it counts in and, when its consumer stopped, why."""

    last_seq: int = 0
    stream_created: datetime | None = None
    halted: str | None = None


async def read_position(conn: AsyncConnection, projection: str, stream: str) -> Position:
    """The checkpoint of ``projection`` on ``stream`` with its stream identity (all empty when none)."""
    cur = await conn.execute(_READ_POSITION, (projection, stream))
    row = await cur.fetchone()
    return Position() if row is None else Position(int(row[0]), row[1], row[2])


async def record_stream(conn: AsyncConnection, projection: str, stream: str, created: datetime) -> None:
    """Record that the checkpoint counts in the stream created at ``created``."""
    await conn.execute(_RECORD_STREAM, (projection, stream, created))


async def halt(conn: AsyncConnection, projection: str, stream: str, reason: str) -> None:
    """Record that the consumer stopped, and why (``/health/detailed`` shows it until a replay resets it)."""
    await conn.execute(_HALT, (projection, stream, reason))


async def halted_checkpoints(conn: AsyncConnection) -> list[tuple[str, str, int, str]]:
    """(projection, stream, last_seq, reason) of every consumer stopped by a stream that changed under it."""
    cur = await conn.execute(_HALTED)
    return [(str(p), str(s), int(q), str(r)) for p, s, q, r in await cur.fetchall()]
