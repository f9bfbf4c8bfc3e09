"""The one-row read every `get by id` view does."""

from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


async def fetch_one(pool: AsyncConnectionPool, query: LiteralString, params: tuple[Any, ...]) -> dict[str, Any] | None:
    """The first row of a prepared, parameterised query as a dict, or None."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params, prepare=True)
        return await cur.fetchone()
