"""Store POINTS messages as the ingest worker does (RowSet → write_rows → build_notice), without NATS."""

from psycopg_pool import AsyncConnectionPool

from ingest_worker.notices import build_notice
from ingest_worker.rows import RowSet
from ingest_worker.writer import Inserted, PartitionCache, write_rows
from telemetry_schemas.notices import PointsStored
from telemetry_schemas.values import Point

# (POINTS sequence, device id, its points)
Message = tuple[int, str, list[Point]]


async def store_messages(pool: AsyncConnectionPool, messages: list[Message]) -> tuple[Inserted, list[PointsStored]]:
    """Write ``messages`` in one transaction; what the upsert reported as inserted, and their notices."""
    rows = RowSet()
    for seq, device, points in messages:
        for p in points:
            rows.add(device, p, seq)
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        inserted = await write_rows(conn, rows.rows())
    return inserted, [build_notice(device, seq, points, inserted) for seq, device, points in messages]
