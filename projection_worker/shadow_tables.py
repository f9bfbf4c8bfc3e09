"""Shadow copies of a read model's tables in schema ``telemetry_replay`` (migration 0016), and the swap.

A shadow table has the live one's columns, defaults, checks, keys, indexes and triggers (the erased-user
trigger of migration 0011 must keep working after the swap), all under the same names, so that after the
swap the catalog looks exactly as before. Functions of schema ``telemetry`` that write a shadowed table
(``refresh_rollups``) get a shadow copy too, and the projection's SQL is rewritten to name the shadows
(:func:`rewriter`), so the projections' own ``apply`` builds the shadow unchanged.
"""

import re
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, sql

LIVE = "telemetry"
SHADOW = "telemetry_replay"

_CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname
"""
_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = %s::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
"""
_TRIGGERS = "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal"
_FUNCTIONS = """
SELECT p.proname, pg_get_functiondef(p.oid), p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'telemetry' AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype
"""


def _names(tables: tuple[str, ...]) -> list[str]:
    return [t.partition(".")[2] for t in tables]


def _pattern(names: list[str]) -> re.Pattern[str]:
    return re.compile(r"\btelemetry\.(" + "|".join(map(re.escape, names)) + r")\b")


async def _rows(conn: AsyncConnection, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return list(await cur.fetchall())


async def create_shadows(conn: AsyncConnection, tables: tuple[str, ...]) -> re.Pattern[str]:
    """(Re)create empty shadows of ``tables`` and of the functions writing them; return the rewrite pattern."""
    names = _names(tables)
    for name in names:
        live, shadow = sql.Identifier(LIVE, name), sql.Identifier(SHADOW, name)
        qualified = f"{LIVE}.{name}"
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(shadow))  # a failed replay's leftover
        await conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL EXCLUDING INDEXES)").format(shadow, live))
        on_live = re.compile(r" ON " + re.escape(qualified) + r"\b")
        for conname, definition in await _rows(conn, _CONSTRAINTS, (qualified,)):
            add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}")
            await conn.execute(add.format(shadow, sql.Identifier(conname), sql.SQL(definition)))
        for (definition,) in await _rows(conn, _INDEXES, (qualified,)) + await _rows(conn, _TRIGGERS, (qualified,)):
            await conn.execute(on_live.sub(f" ON {SHADOW}.{name}", definition).encode())  # catalog text, not input
    writes = _pattern(names)
    functions: list[str] = []
    for proname, definition, source in await _rows(conn, _FUNCTIONS):
        if writes.search(source):
            functions.append(str(proname))
            shadow_def = writes.sub(SHADOW + r".\1", definition)
            shadow_def = re.sub(r"FUNCTION\s+telemetry\.", f"FUNCTION {SHADOW}.", shadow_def, count=1)
            await conn.execute(shadow_def.encode())  # catalog text, not input
    return _pattern(names + functions)


def rewriter(pattern: re.Pattern[str]) -> Callable[[str], str]:
    """A function that makes a projection's SQL name the shadow tables and functions instead of the live ones."""
    return lambda query: pattern.sub(SHADOW + r".\1", query)


class RewritingCursor:
    """Passes ``execute`` / ``executemany`` to a cursor with the SQL rewritten; everything else as is."""

    def __init__(self, cur: AsyncCursor[Any], rewrite: Callable[[str], str]) -> None:
        """Wrap ``cur``."""
        self._cur = cur
        self._rewrite = rewrite

    def _text(self, query: Any) -> str:
        return self._rewrite(query if isinstance(query, str) else query.as_string(self._cur))

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> "RewritingCursor":
        """Execute the rewritten query."""
        await self._cur.execute(self._text(query).encode(), params, **kwargs)
        return self

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        """Execute the rewritten query for each parameter set."""
        await self._cur.executemany(self._text(query).encode(), params_seq, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


async def swap_in(conn: AsyncConnection, tables: tuple[str, ...], principal_columns: tuple[tuple[str, str], ...],
                  anonymous: str) -> None:  # fmt: skip
    """Inside the caller's transaction: replace the live tables by their shadows (readers wait, never see a gap).

    Users erased while the shadow was being built are anonymised in it first (the live rows were updated in
    place by the platform-events handler; the shadow's trigger only covers writes after the erasure).
    """
    names = _names(tables)
    for table, column in principal_columns:
        if table in names:
            await conn.execute(
                sql.SQL("UPDATE {} SET {} = %s WHERE telemetry.is_erased({})").format(
                    sql.Identifier(SHADOW, table), sql.Identifier(column), sql.Identifier(column)
                ),
                (anonymous,),
            )
    live = sql.SQL(", ").join(sql.Identifier(LIVE, n) for n in names)
    await conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(live))
    for name in names:
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(LIVE, name)))
        await conn.execute(
            sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(sql.Identifier(SHADOW, name), sql.Identifier(LIVE))
        )


async def drop_shadow_functions(conn: AsyncConnection) -> None:
    """Remove the shadow copies of functions (after a swap or a failed replay)."""
    cur = await conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s",
        (SHADOW,),
    )
    for (signature,) in await cur.fetchall():
        await conn.execute(f"DROP FUNCTION IF EXISTS {signature}".encode())  # catalog text, not input
