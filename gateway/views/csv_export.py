"""Points as CSV rows, streamed from a server-side cursor in constant memory."""

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime

import msgspec
from psycopg_pool import AsyncConnectionPool

from telemetry_core.value_columns import from_columns

HEADER = ("timestamp", "device_id", "metric_name", "value", "unit", "tags")
_FILTER = "device_id = ANY(%(devices)s) AND metric_name = ANY(%(metrics)s) AND time >= %(start)s AND time < %(end)s"
_EXISTS = f"SELECT EXISTS (SELECT 1 FROM telemetry.points WHERE {_FILTER})"  # noqa: S608 - constant text
_ROWS = (
    "SELECT time, device_id, metric_name, value_type, value_num, value_text, value_bool, value_json, unit, tags "  # noqa: S608
    f"FROM telemetry.points WHERE {_FILTER} ORDER BY time, device_id, metric_name"
)
ROWS_PER_CHUNK = 2000


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return msgspec.json.encode(value).decode()
    return str(value)


async def any_points(pool: AsyncConnectionPool, params: dict[str, object]) -> bool:
    """Whether the export would hold at least one row (so a 404 can be answered before streaming)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_EXISTS, params)
        row = await cur.fetchone()
    return bool(row and row[0])


async def csv_chunks(pool: AsyncConnectionPool, params: dict[str, object]) -> AsyncIterator[bytes]:
    """The header, then rows in time order, a chunk of ROWS_PER_CHUNK rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    # A named (server-side) cursor: PostgreSQL hands rows over in batches, whatever the export size.
    async with pool.connection() as conn, conn.transaction(), conn.cursor(name="csv_export") as cur:
        cur.itersize = ROWS_PER_CHUNK
        await cur.execute(_ROWS, params)
        n = 0
        async for time, device, metric, kind, num, text, flag, obj, unit, tags in cur:
            when: datetime = time
            value = from_columns(kind, num, text, flag, obj)
            writer.writerow((when.isoformat(), device, metric, _cell(value), unit or "", _cell(tags or {})))
            n += 1
            if n % ROWS_PER_CHUNK == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode()
