"""One transaction: the batch's points into telemetry.points and what they add into the rollups.

``write_rows`` is the ingest worker's path. First, in a savepoint, a COPY straight into telemetry.points with
the worker's rollup deltas merged after it (migration 0021, ingest_worker/rollup_deltas.py): the common case,
where no key of the batch is stored yet. When some key exists (an overwrite, a late duplicate, a redelivery)
the COPY fails on it, only the savepoint rolls back, and the batch goes through the temp stage:
telemetry.write_points_stage (migrations 0013, 0018) upserts it (later stream sequence wins), adds what it
inserted to rollup_minute / rollup_hour and recomputes from raw only the minutes where a row was updated.
``write_points_only`` is the bare COPY + upsert (the benchmarks' baseline, no rollups).
"""

import weakref
from collections.abc import Awaitable, Iterable, Sequence
from datetime import date
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.errors import UniqueViolation

from ingest_worker.rollup_deltas import (
    STAGE_COLUMNS,
    STAGE_TYPES,
    Inserted,
    inserted_counts,
    rollup_rows,
    with_first_seq,
)
from ingest_worker.rows import COLUMNS, COPY_TYPES, Row

_COLS = ", ".join(COLUMNS)
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[3:])

# ON COMMIT DELETE ROWS: the stage is empty at the start of every transaction on this connection.
_STAGE = "CREATE TEMP TABLE IF NOT EXISTS points_stage (LIKE telemetry.points INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
# What write_points_stage kept of the upsert's rows (its column list is that function's RETURNING).
_WRITTEN = (
    "CREATE TEMP TABLE IF NOT EXISTS points_written (device_id text, metric_name text, time timestamptz, "
    "value_type smallint, value_num double precision, src_seq bigint, inserted boolean, fresh boolean, key text) "
    "ON COMMIT DELETE ROWS"
)
_ROLLUP_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_stage (grain text, device_id text, metric_name text, bucket timestamptz, "
    "count bigint, sum double precision, min double precision, max double precision, sketch jsonb) "
    "ON COMMIT DELETE ROWS"
)
_WRITE_WITH_ROLLUPS = "SELECT src_seq, metric_name, hour, inserted FROM telemetry.write_points_stage()"
_COPY = f"COPY points_stage ({_COLS}) FROM STDIN (FORMAT BINARY)"
# The fresh batch: straight into the partitioned table (rows routed to their day), first_seq = src_seq.
_COPY_FRESH = f"COPY telemetry.points ({_COLS}, first_seq) FROM STDIN (FORMAT BINARY)"
_COPY_FRESH_TYPES = [*COPY_TYPES, "int8"]
_COPY_DELTAS = f"COPY rollup_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_MERGE_DELTAS = "SELECT telemetry.merge_rollup_stage()"
# Later in the stream wins, even when an earlier message commits after it (redelivery, parallel workers).
# first_seq is set on insert only (not in _UPDATES): a returned row with first_seq = src_seq was inserted by
# this message (now, or before a crash that lost its notice); any other returned row was an overwrite. The
# counts of inserted rows per (message, metric, hour) feed the stats read model (migration 0010).
_UPSERT = (
    f"WITH written AS (INSERT INTO telemetry.points AS p ({_COLS}, first_seq) "  # noqa: S608 - constants only
    f"SELECT {_COLS}, src_seq FROM points_stage "
    f"ON CONFLICT (device_id, metric_name, time) DO UPDATE SET {_UPDATES} WHERE p.src_seq <= EXCLUDED.src_seq "
    "RETURNING p.src_seq, p.metric_name, p.time, p.first_seq = p.src_seq AS inserted) "
    "SELECT src_seq, metric_name, date_trunc('hour', time, 'UTC'), count(*) FROM written WHERE inserted "
    "GROUP BY 1, 2, 3"
)

_ENSURE_PARTITIONS = "SELECT telemetry.ensure_partition(d) FROM unnest(%s::date[]) AS d"

# Connections whose session already has the temp stage: one round trip saved per transaction.
_prepared: "weakref.WeakSet[AsyncConnection]" = weakref.WeakSet()


class PartitionCache:
    """Days whose partition is known to exist, so the hot path asks PostgreSQL only for new days."""

    def __init__(self) -> None:
        self.known: set[date] = set()

    async def ensure(self, conn: AsyncConnection, days: set[date]) -> None:
        """Create missing partitions in their own short transaction (DDL must not hold the batch)."""
        missing = sorted(days - self.known)
        if not missing:
            return
        async with conn.transaction():
            await conn.execute(_ENSURE_PARTITIONS, (missing,))
        self.known.update(missing)


async def write_rows(
    conn: AsyncConnection, rows: list[Row], before_commit: Awaitable[object] | None = None
) -> Inserted:
    """Upsert ``rows`` (already de-duplicated) and their rollups in one transaction; the caller acks after.

    Returns how many rows each message inserted, per metric and hour (overwrites are not counted).
    ``before_commit`` is awaited after the statements, before COMMIT (its failure rolls the transaction back): the
    announcement to the gateways (ingest_worker/storing.py) overlaps the COPY instead of preceding it.
    """
    await prepare_stage(conn)
    async with conn.transaction(), conn.cursor() as cur:
        try:
            async with conn.transaction():  # a savepoint: a key that exists undoes only the COPY
                await _copy(cur, _COPY_FRESH, _COPY_FRESH_TYPES, with_first_seq(rows))
        except UniqueViolation:
            inserted = await _staged(cur, rows, _WRITE_WITH_ROLLUPS)
        else:
            await _copy(cur, _COPY_DELTAS, STAGE_TYPES, rollup_rows(rows))
            await cur.execute(_MERGE_DELTAS, prepare=True)
            inserted = inserted_counts(rows)
        if before_commit is not None:
            await before_commit
    return inserted


async def write_points_only(conn: AsyncConnection, rows: list[Row]) -> Inserted:
    """The bare write path: COPY + upsert into points, no rollups (the benchmarks' baseline)."""
    await prepare_stage(conn)
    async with conn.transaction(), conn.cursor() as cur:
        return await _staged(cur, rows, _UPSERT)


async def prepare_stage(conn: AsyncConnection) -> None:
    """Create this session's temp tables (points_stage, points_written, rollup_stage) once per connection.

    Public for the 10 M-point query benchmark's loader (tests/bench/big_load.py), which fills the same
    stage with COPY and calls the same telemetry.write_points_stage(), so what it stores is what this writes.
    """
    if conn not in _prepared:
        async with conn.transaction():
            await conn.execute(_STAGE)
            await conn.execute(_WRITTEN)
            await conn.execute(_ROLLUP_STAGE)
        _prepared.add(conn)


async def _copy(cur: AsyncCursor[Any], statement: str, types: list[str], rows: Iterable[Sequence[Any]]) -> None:
    async with cur.copy(statement) as copy:
        copy.set_types(types)
        # The formatter's write_row (what AsyncCopy.write_row calls) fills a buffer and hands it over only
        # when full: awaiting only then saves a coroutine per row. The first chunk carries the binary
        # signature, and the copy's exit writes what is left with the trailer, as with write_row.
        format_row = copy.formatter.write_row
        for row in rows:
            if chunk := format_row(row):
                await copy.write(chunk)


async def _staged(cur: AsyncCursor[Any], rows: list[Row], statement: str) -> Inserted:
    """COPY into points_stage, then ``statement`` (write_points_stage() or the bare upsert); what it inserted."""
    await _copy(cur, _COPY, COPY_TYPES, rows)
    await cur.execute(statement, prepare=True)
    inserted: Inserted = {}
    for seq, metric, hour, count in await cur.fetchall():
        inserted.setdefault((seq, metric), []).append((hour, count))
    return inserted
