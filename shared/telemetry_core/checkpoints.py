"""projection_checkpoints(projection, stream, last_seq): how far a read model or engine has applied a stream.

One place for this SQL: projections and the alert engine write their position in the same transaction as
their rows; the gateway reads it to know when a write is visible (read-your-writes).
"""

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
