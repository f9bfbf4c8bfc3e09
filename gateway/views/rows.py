"""The one-row read every `get by id` view does."""

from typing import Any, LiteralString

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool


async def fetch_one(pool: AsyncConnectionPool, query: LiteralString, params: tuple[Any, ...]) -> dict[str, Any] | None:
    """The first row of a prepared, parameterised query as a dict, or None."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params, prepare=True)
        return await cur.fetchone()


async def fetch_page(
    pool: AsyncConnectionPool, page: LiteralString, count: LiteralString, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], int]:
    """A page of rows carrying ``count(*) OVER () AS total``, and that total.

    When the page is empty (offset past the end) the total comes from ``count`` with the same filters.
    """
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(page, params)
        rows = await cur.fetchall()
        if rows:
            return rows, int(rows[0]["total"])
        await cur.execute(count, params)
        return rows, int((await cur.fetchone() or {"count": 0})["count"])
