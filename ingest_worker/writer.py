"""One transaction: COPY into a temp stage, then upsert into points and merge into the rollups.

``write_rows`` is the ingest worker's path: telemetry.write_points_stage (migration 0013) upserts the
stage and, in the same transaction, adds what it inserted to rollup_minute / rollup_hour and
recomputes from raw only the minutes where a row was updated. ``write_points_only`` is the bare
COPY + upsert (the benchmarks' baseline, no rollups).
"""

import weakref
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Any

import structlog
from psycopg import AsyncConnection
from psycopg.abc import Buffer
from psycopg.errors import CardinalityViolation
from psycopg.types.json import JsonbBinaryDumper

from ingest_worker.rows import COLUMNS, COPY_TYPES, DumpedJsonb, Row, latest_rows
from telemetry_core.metrics import KEYED_REWRITES
from telemetry_core.pg_pool import json_dumps

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
_WRITE_WITH_ROLLUPS = "SELECT src_seq, metric_name, hour, inserted FROM telemetry.write_points_stage()"
_COPY = f"COPY points_stage ({_COLS}) FROM STDIN (FORMAT BINARY)"
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

# (POINTS sequence, metric) -> [(UTC hour, points that message inserted in that hour)]
Inserted = dict[tuple[int, str], list[tuple[datetime, int]]]
_ENSURE_PARTITIONS = "SELECT telemetry.ensure_partition(d) FROM unnest(%s::date[]) AS d"

# Connections whose session already has the temp stage: one round trip saved per transaction.
_staged: "weakref.WeakSet[AsyncConnection]" = weakref.WeakSet()
_log = structlog.get_logger()


class JsonbCopyDumper(JsonbBinaryDumper):
    """The COPY's jsonb dumper: a DumpedJsonb is already in binary form; anything else is encoded as usual.

    Registered for DumpedJsonb on each staging connection, and so also by the jsonb oid, which is how the
    COPY's set_types picks its dumpers (ordinary parameters are dumped by their Python type: unchanged).
    """

    _dumps = staticmethod(json_dumps)

    def dump(self, obj: Any) -> Buffer | None:
        """``obj`` as it is when already dumped, else psycopg's binary jsonb of it."""
        if type(obj) is DumpedJsonb:
            return obj
        return super().dump(obj)


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
    ``before_commit`` is awaited after the statement, before COMMIT (its failure rolls the transaction back): the
    announcement to the gateways (ingest_worker/storing.py) overlaps the COPY instead of preceding it.
    """
    return await _write(conn, rows, _WRITE_WITH_ROLLUPS, before_commit)


async def write_points_only(conn: AsyncConnection, rows: list[Row]) -> Inserted:
    """The bare write path: COPY + upsert into points, no rollups (the benchmarks' baseline)."""
    return await _write(conn, rows, _UPSERT)


async def prepare_stage(conn: AsyncConnection) -> None:
    """Create this session's temp tables (points_stage, points_written) once per connection.

    Public for the 10 M-point query benchmark's loader (tests/bench/big_load.py), which fills the same
    stage with COPY and calls the same telemetry.write_points_stage(), so what it stores is what this writes.
    """
    if conn not in _staged:
        async with conn.transaction():
            await conn.execute(_STAGE)
            await conn.execute(_WRITTEN)
        conn.adapters.register_dumper(DumpedJsonb, JsonbCopyDumper)
        _staged.add(conn)


async def _write(
    conn: AsyncConnection, rows: list[Row], statement: str, before_commit: Awaitable[object] | None = None
) -> Inserted:
    """Copy and write ``rows`` as they are; if a key repeats among them, again with one row per key.

    ON CONFLICT refuses a statement that holds one key twice (cardinality_violation, before anything is kept:
    the transaction rolls back and ``before_commit`` has not been awaited yet). Rare (a message redelivered or
    sent again within one fetch), so the common batch is not keyed in Python (ingest_worker/rows.py).
    """
    try:
        return await _write_once(conn, rows, statement, before_commit)
    except CardinalityViolation:
        latest = latest_rows(rows)
        KEYED_REWRITES.inc()
        _log.info("batch_keys_repeated_written_again", rows=len(rows), distinct=len(latest))
        return await _write_once(conn, latest, statement, before_commit)


async def _write_once(
    conn: AsyncConnection, rows: list[Row], statement: str, before_commit: Awaitable[object] | None
) -> Inserted:
    await prepare_stage(conn)
    async with conn.transaction(), conn.cursor() as cur:
        async with cur.copy(_COPY) as copy:
            copy.set_types(COPY_TYPES)
            # The formatter's write_row (what AsyncCopy.write_row calls) fills a buffer and hands it over only
            # when full: awaiting only then saves a coroutine per row. The first chunk carries the binary
            # signature, and the copy's exit writes what is left with the trailer, as with write_row.
            format_row = copy.formatter.write_row
            for row in rows:
                if chunk := format_row(row):
                    await copy.write(chunk)
        await cur.execute(statement, prepare=True)
        inserted: Inserted = {}
        for seq, metric, hour, count in await cur.fetchall():
            inserted.setdefault((seq, metric), []).append((hour, count))
        if before_commit is not None:
            await before_commit
    return inserted
