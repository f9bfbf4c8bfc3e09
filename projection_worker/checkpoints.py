"""Read and advance projection_checkpoints(projection, stream, last_seq) inside the caller's transaction."""

from psycopg import AsyncConnection

_READ = """
SELECT last_seq FROM telemetry.projection_checkpoints WHERE projection = %s AND stream = %s FOR UPDATE
"""
_ADVANCE = """
INSERT INTO telemetry.projection_checkpoints (projection, stream, last_seq) VALUES (%s, %s, %s)
ON CONFLICT (projection, stream) DO UPDATE SET last_seq = EXCLUDED.last_seq, updated_at = now()
"""


async def read_checkpoint(conn: AsyncConnection, projection: str, stream: str) -> int:
    """The last applied stream sequence (0 when none), locked until the transaction ends."""
    cur = await conn.execute(_READ, (projection, stream))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def advance_checkpoint(conn: AsyncConnection, projection: str, stream: str, seq: int) -> None:
    """Record that everything up to ``seq`` is applied."""
    await conn.execute(_ADVANCE, (projection, stream, seq))
