"""A probe for the next step of issue 13 item 3: rollups rebuilt once per closed minute instead of merged per write.

``python -m tests.bench.dirty_minutes [single|harness] [mode ...]`` (about 2 minutes per mode; nothing in the product
runs this design yet: docs/rollups-dirty-minutes.md is the design, this the measurement behind it).

Loads (durable embedded PostgreSQL, one writer connection and one background connection, backend CPU per point):

* ``single``: ``make bench-steady``'s "single" load (tests/bench/steady_rollups.py): 512 devices x 10 metrics, each
  transaction one point per series, one second apart, late in the hour (180 measured transactions, 3 closed
  minutes; the background builds at each minute boundary);
* ``harness``: the peers harness's shape: each transaction 64 new devices x 10 metrics x 100 s (one point a second,
  tagged), every series written once, in the past; the background builds every dirty minute every 4 transactions.

Modes:

* ``today``: ``telemetry.write_points_stage()`` as shipped (per-transaction merges into rollup_minute and
  rollup_hour, hour sketches pending) and the hour-sketch compaction every 30 rounds;
* ``refresh``: the writer only inserts the points and marks each (device, metric, minute) it touched dirty
  (``INSERT … ON CONFLICT DO NOTHING`` under a shared advisory lock); at each minute boundary the background
  connection takes the closed dirty minutes (``DELETE … RETURNING`` under the exclusive advisory lock, released at
  once) and rebuilds them with ``telemetry.refresh_rollups`` (minutes from raw points, their hours from minutes);
* ``minutes``: the same, but the background builds the minute rows from raw points only (no hours): a lower bound;
* ``additive``: minutes from raw points, and each minute built for the first time added to its hour (count / sum /
  min / max merged, its sketch pending as migration 0023 does), with the compaction every 30 rounds;
* ``hourly``: ``minutes``, then every hour built once from its minutes at the end, as when it closes; that build's
  CPU is shared by every point of the hours (the fill's too), as an hour's 3,600 points per series would share it;
* ``onepass`` (the harness only: its hours are written whole, in the past): every taken hour's minutes and the hour
  itself built from one pass over its raw points;
* ``hybrid``: the writer inserts the minute and hour rows that do not exist yet (today's statements for fresh rows,
  ``ON CONFLICT DO NOTHING``) and marks the minutes and hours whose row existed; the background builds marked
  minutes from raw points when they close, and marked hours from their minutes at the end (as ``hourly``).

Each run ends by checking that every built minute (and, but for ``minutes``, every hour of them) counts what the raw
points count (today: every minute and hour).
"""

import asyncio
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg

from ingest_worker.rows import COPY_TYPES, RowSet
from ingest_worker.writer import PartitionCache, prepare_stage
from telemetry_core.embedded import start_postgres
from telemetry_core.migrate import migrate
from telemetry_schemas.values import Point
from tests.bench.steady_rollups import _COPY, _INSERT, _WRITTEN, _batch, _merge

DEVICES, FILL_ROUNDS, FILL_SECONDS = 512, 20, 60
FAR = datetime(2999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Round:
    rows: RowSet
    measured: bool
    build_before: datetime | None  # the background builds the dirty minutes before this, after the round


@dataclass(frozen=True)
class Load:
    rounds: int
    round: Callable[[int, datetime, random.Random], Round]
    checked_before: Callable[[datetime], datetime]  # the minutes built by the end (start → bound)


def _single(r: int, start: datetime, rng: random.Random) -> Round:
    measured = r >= FILL_ROUNDS
    seconds = 1 if measured else FILL_SECONDS
    second = min(r, FILL_ROUNDS) * FILL_SECONDS + max(r - FILL_ROUNDS, 0)
    now = start + timedelta(seconds=second + seconds)
    due = now.second == 0 or not measured
    return Round(
        _batch(DEVICES, start, second, seconds, r * DEVICES + 1, rng), measured, now.replace(second=0) if due else None
    )


def _harness(r: int, start: datetime, rng: random.Random) -> Round:
    rows = RowSet()
    for d in range(64):
        points = [
            Point(timestamp=start + timedelta(seconds=k), metric_name=f"m{m}", value=round(rng.uniform(0, 100), 2),
                  unit="u", tags={"site": f"s{d % 7}", "host": f"h{d}"})
            for m in range(10) for k in range(100)
        ]  # fmt: skip
        rows.add_points(f"harness-{r:03d}-{d:02d}", points, r * 64 + d + 1)
    last = r == 3 + 24 - 1
    return Round(rows, r >= 3, FAR if (r + 1) % 4 == 0 or last else None)


LOADS = {
    "single": Load(
        FILL_ROUNDS + 180,
        _single,
        lambda start: (start + timedelta(seconds=FILL_ROUNDS * FILL_SECONDS + 180)).replace(second=0),
    ),
    "harness": Load(3 + 24, _harness, lambda _start: FAR),
}
MODES = ("today", "refresh", "minutes", "additive", "hourly", "hybrid", "onepass")
LOCK = 72180099  # the advisory lock key writers share and the refresher takes alone for a moment

_DIRTY = """CREATE TABLE IF NOT EXISTS telemetry.rollup_dirty (
    device_id text, metric_name text, bucket timestamptz, PRIMARY KEY (device_id, metric_name, bucket))"""
_MARK = """INSERT INTO telemetry.rollup_dirty
    SELECT DISTINCT s.device_id, s.metric_name, date_bin('1 minute', s.time, timestamptz 'epoch')
    FROM points_stage s WHERE s.value_type IN (0, 1) ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"""
_TAKE = "DELETE FROM telemetry.rollup_dirty WHERE bucket < %s RETURNING device_id, metric_name, bucket"
_MINUTES = """INSERT INTO telemetry.rollup_minute AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT t.d, t.m, t.b, sum(s.n), sum(s.total), min(s.lo), max(s.hi), jsonb_object_agg(s.key, s.n)
    FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS t(d, m, b)
    CROSS JOIN LATERAL (
        SELECT telemetry.dd_key(p.value_num) AS key, count(*) AS n, sum(p.value_num) AS total,
               min(p.value_num) AS lo, max(p.value_num) AS hi
        FROM telemetry.points p
        WHERE p.device_id = t.d AND p.metric_name = t.m AND p.time >= t.b AND p.time < t.b + interval '1 minute'
          AND p.value_type IN (0, 1)
        GROUP BY 1
    ) s
    GROUP BY t.d, t.m, t.b ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum,
        min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch"""
_REFRESHED = """CREATE TEMP TABLE IF NOT EXISTS refreshed (d text, m text, b timestamptz, n bigint, total float8,
    lo float8, hi float8, sketch jsonb, existed boolean) ON COMMIT DELETE ROWS"""
_MINUTES_KEPT = (
    "WITH x AS ("
    + _MINUTES
    + " RETURNING r.device_id, r.metric_name, r.bucket, r.count, r.sum, r.min, r.max, r.sketch, r.xmax <> 0"
    + ") INSERT INTO refreshed SELECT * FROM x"
)
# Minutes built for the first time, added to their hours as migration 0023 adds a batch (a minute built again, for
# late points, would need its hour rebuilt instead: not in this load).
_HOURS_ADDED = """WITH hours AS MATERIALIZED (
        SELECT a.d, a.m, a.b, a.n, a.total, a.lo, a.hi, k.sketch FROM
          (SELECT d, m, date_trunc('hour', b) AS b, sum(n) AS n, sum(total) AS total, min(lo) AS lo, max(hi) AS hi
           FROM refreshed WHERE NOT existed GROUP BY 1, 2, 3) a
          LEFT JOIN (SELECT d, m, hb, jsonb_object_agg(key, v) AS sketch FROM (
                       SELECT f.d, f.m, date_trunc('hour', f.b) AS hb, e.key, sum(e.value::bigint) AS v
                       FROM refreshed f, jsonb_each_text(f.sketch) e WHERE NOT f.existed GROUP BY 1, 2, 3, 4) z
                     GROUP BY 1, 2, 3) k ON k.d = a.d AND k.m = a.m AND k.hb = a.b
    ), merged AS (
        INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
        SELECT h.d, h.m, h.b, h.n, h.total, h.lo, h.hi, coalesce(h.sketch, '{}') FROM hours h ORDER BY 1, 2, 3
        ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET
            count = r.count + EXCLUDED.count, sum = r.sum + EXCLUDED.sum, min = least(r.min, EXCLUDED.min),
            max = greatest(r.max, EXCLUDED.max)
        RETURNING r.device_id, r.metric_name, r.bucket, r.xmax <> 0 AS existed
    )
    INSERT INTO telemetry.rollup_hour_pending (device_id, metric_name, bucket, sketch)
    SELECT h.d, h.m, h.b, h.sketch FROM hours h JOIN merged u ON u.device_id = h.d AND u.metric_name = h.m
        AND u.bucket = h.b
    WHERE u.existed AND h.sketch IS NOT NULL"""
_COMPACT = "SELECT telemetry.compact_hour_sketches(500, 8, '-infinity')"
# hybrid: the writer inserts the rollup rows that do not exist (today's fresh-row statements, DO NOTHING on a
# conflict) and marks the minutes and hours whose row existed (stale until built again).
_STALE_HOURS = """CREATE TABLE IF NOT EXISTS telemetry.rollup_stale_hours (
    device_id text, metric_name text, bucket timestamptz, PRIMARY KEY (device_id, metric_name, bucket))"""


def _fresh_or_marked(table: str, width: str, marks: str) -> str:
    """Insert the batch's rows of ``table`` that do not exist; mark the (series, bucket)s that do in ``marks``.

    Existence is looked up first (one primary-key probe per series and bucket), so that a fleet's transactions, whose
    rows all exist, build no aggregate at all; a row created meanwhile by another writer is caught by the insert's
    conflict and marked too.
    """
    merge = _merge(table, width)
    aggregate = merge[merge.index("SELECT") : merge.index("ON CONFLICT")]
    fresh_only = aggregate.replace(
        "FROM points_written w WHERE w.value_type IN (0, 1)",
        f"FROM points_written w WHERE w.value_type IN (0, 1) AND NOT EXISTS (SELECT 1 FROM existing e WHERE "
        f"e.d = w.device_id AND e.m = w.metric_name AND e.b = date_bin('{width}', w.time, timestamptz 'epoch'))",
    )
    assert fresh_only != aggregate
    return f"""WITH keys AS MATERIALIZED (
        SELECT DISTINCT w.device_id AS d, w.metric_name AS m, date_bin('{width}', w.time, timestamptz 'epoch') AS b
        FROM points_written w WHERE w.value_type IN (0, 1)
    ), existing AS MATERIALIZED (
        SELECT k.d, k.m, k.b FROM keys k WHERE EXISTS (
            SELECT 1 FROM telemetry.{table} r WHERE r.device_id = k.d AND r.metric_name = k.m AND r.bucket = k.b)
    ), batch AS MATERIALIZED ({fresh_only}), fresh AS (
        INSERT INTO telemetry.{table} AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
        SELECT * FROM batch ON CONFLICT DO NOTHING RETURNING r.device_id, r.metric_name, r.bucket)
    INSERT INTO telemetry.{marks}
    SELECT d, m, b FROM existing
    UNION
    SELECT b.d, b.m, b.b FROM batch b
    WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.device_id = b.d AND f.metric_name = b.m AND f.bucket = b.b)
    ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"""


# In a plpgsql function, as the product's write is (migration 0023's write_points_stage): its statements keep cached
# plans. Sent one by one from the client instead, each was planned again with the temp table's guessed size and its
# aggregates sorted on disk: 4.0 against 2.5 µs per point for the two rollup statements on the harness's shape.
# The anti-joins against the CTEs must be hashed: the planner guesses 200 rows per CTE, and a nested loop over a
# 300,000-point transaction against its 5,120 existing rows ran for minutes.
_HYBRID_FUNCTION = """CREATE OR REPLACE FUNCTION pg_temp.hybrid_rollups() RETURNS void LANGUAGE plpgsql
SET enable_nestloop = off AS $f$
BEGIN
    {minute};
    {hour};
END;
$f$"""
_HYBRID = (_WRITTEN, _fresh_or_marked("rollup_minute", "1 minute", "rollup_dirty"),
           _fresh_or_marked("rollup_hour", "1 hour", "rollup_stale_hours"))  # fmt: skip
_STALE_HOURS_FROM_MINUTES = """WITH taken AS (DELETE FROM telemetry.rollup_stale_hours RETURNING device_id, metric_name, bucket)
    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT t.device_id, t.metric_name, t.bucket, a.n, a.total, a.lo, a.hi, coalesce(k.sketch, '{}')
    FROM taken t
    CROSS JOIN LATERAL (SELECT sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi
                        FROM telemetry.rollup_minute m WHERE m.device_id = t.device_id AND m.metric_name = t.metric_name
                          AND m.bucket >= t.bucket AND m.bucket < t.bucket + interval '1 hour') a
    CROSS JOIN LATERAL (SELECT jsonb_object_agg(key, v) AS sketch FROM (
                          SELECT e.key, sum(e.value::bigint) AS v FROM telemetry.rollup_minute m, jsonb_each_text(m.sketch) e
                          WHERE m.device_id = t.device_id AND m.metric_name = t.metric_name
                            AND m.bucket >= t.bucket AND m.bucket < t.bucket + interval '1 hour' GROUP BY 1) z) k
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum,
        min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch"""
# Whole hours whose every minute is taken at once (the harness's, written in the past): their minutes and the hours
# themselves from one pass over the raw points (each point's sketch key computed once, grouped twice).
_ONE_PASS = """WITH t AS (SELECT DISTINCT d, m, date_trunc('hour', b) AS hb
               FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS u(d, m, b)),
    cells AS MATERIALIZED (
        SELECT t.d, t.m, c.mb, t.hb, c.key, c.n, c.total, c.lo, c.hi
        FROM t CROSS JOIN LATERAL (  -- one primary-key range scan per series-hour (a join scanned the partition)
            SELECT date_bin('1 minute', p.time, timestamptz 'epoch') AS mb, telemetry.dd_key(p.value_num) AS key,
                   count(*) AS n, sum(p.value_num) AS total, min(p.value_num) AS lo, max(p.value_num) AS hi
            FROM telemetry.points p
            WHERE p.device_id = t.d AND p.metric_name = t.m AND p.time >= t.hb AND p.time < t.hb + interval '1 hour'
              AND p.value_type IN (0, 1)
            GROUP BY 1, 2) c
    ), minutes AS (
        INSERT INTO telemetry.rollup_minute AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
        SELECT d, m, mb, sum(n), sum(total), min(lo), max(hi), jsonb_object_agg(key, n) FROM cells
        GROUP BY d, m, mb ORDER BY 1, 2, 3
        ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum,
            min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch)
    INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT d, m, hb, sum(n), sum(total), min(lo), max(hi), jsonb_object_agg(key, n)
    FROM (SELECT d, m, hb, key, sum(n) AS n, sum(total) AS total, min(lo) AS lo, max(hi) AS hi
          FROM cells GROUP BY 1, 2, 3, 4) x
    GROUP BY d, m, hb ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum,
        min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch"""
# An hour built once, when it closes, from its minutes (the design's option 3).
_HOURS_FROM_MINUTES = """INSERT INTO telemetry.rollup_hour AS r (device_id, metric_name, bucket, count, sum, min, max, sketch)
    SELECT a.device_id, a.metric_name, a.hb, a.n, a.total, a.lo, a.hi, coalesce(k.sketch, '{}')
    FROM (SELECT device_id, metric_name, date_trunc('hour', bucket) AS hb, sum(count) AS n, sum(sum) AS total,
                 min(min) AS lo, max(max) AS hi
          FROM telemetry.rollup_minute GROUP BY 1, 2, 3) a
    LEFT JOIN (SELECT device_id, metric_name, hb, jsonb_object_agg(key, v) AS sketch FROM (
                 SELECT m.device_id, m.metric_name, date_trunc('hour', m.bucket) AS hb, e.key, sum(e.value::bigint) AS v
                 FROM telemetry.rollup_minute m, jsonb_each_text(m.sketch) e GROUP BY 1, 2, 3, 4) z
               GROUP BY 1, 2, 3) k ON k.device_id = a.device_id AND k.metric_name = a.metric_name AND k.hb = a.hb
    ORDER BY 1, 2, 3
    ON CONFLICT (device_id, metric_name, bucket) DO UPDATE SET count = EXCLUDED.count, sum = EXCLUDED.sum,
        min = EXCLUDED.min, max = EXCLUDED.max, sketch = EXCLUDED.sketch"""
_WRONG = """SELECT count(*) FILTER (WHERE r.count IS DISTINCT FROM x.n) FROM (
        SELECT device_id, metric_name, date_bin(%(width)s, time, timestamptz 'epoch') AS b, count(*) AS n
        FROM telemetry.points WHERE time < %(before)s GROUP BY 1, 2, 3) x
    LEFT JOIN {table} r ON r.device_id = x.device_id AND r.metric_name = x.metric_name AND r.bucket = x.b"""


async def _compact(conn: psycopg.AsyncConnection) -> None:
    while True:
        row = await (await conn.execute(_COMPACT)).fetchone()
        if row is None or row[0] < 500:
            return


async def _refresh(conn: psycopg.AsyncConnection, mode: str, closed: datetime) -> None:
    """Take the dirty minutes before ``closed`` and build them (one transaction)."""
    async with conn.transaction():
        # Every writer that may have marked one of these minutes (or found it marked) holds the lock shared until it
        # commits: taking it alone once means each of their points is committed before the minutes are read.
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK,))
        taken = await (await conn.execute(_TAKE, (closed,))).fetchall()
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))
        if not taken:
            return
        devs, mets, mins = (list(c) for c in zip(*taken, strict=True))
        if mode == "refresh":
            await conn.execute("SELECT telemetry.refresh_rollups(%s, %s, %s)", (devs, mets, mins))
        elif mode in ("minutes", "hourly", "hybrid"):
            await conn.execute(_MINUTES, (devs, mets, mins))
        elif mode == "onepass":
            await conn.execute(_ONE_PASS, (devs, mets, mins))
        else:
            await conn.execute(_REFRESHED)
            await conn.execute(_MINUTES_KEPT, (devs, mets, mins))
            await conn.execute(_HOURS_ADDED)


async def _run(url: str, mode: str, load: Load) -> dict[str, float]:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rng = random.Random(7)
    spent = {"writer": 0.0, "background": 0.0}
    points = 0
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as bg,
    ):
        await prepare_stage(conn)
        await conn.execute(_DIRTY)
        await conn.execute(_STALE_HOURS)
        await conn.execute(_HYBRID_FUNCTION.format(minute=_HYBRID[1], hour=_HYBRID[2]))
        backends = []
        for c in (conn, bg):
            row = await (await c.execute("SELECT pg_backend_pid()")).fetchone()
            backends.append(psutil.Process(row[0] if row else 0))

        def cpu(i: int) -> float:
            times = backends[i].cpu_times()
            return times.user + times.system

        partitions = PartitionCache()
        for r in range(load.rounds):
            this = load.round(r, start, rng)
            await partitions.ensure(conn, this.rows.days())
            before = cpu(0)
            async with conn.transaction(), conn.cursor() as cur:
                if mode != "today":
                    await cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (LOCK,))
                async with cur.copy(_COPY) as copy:
                    copy.set_types(COPY_TYPES)
                    for row in this.rows.rows():
                        await copy.write_row(row)
                if mode == "today":
                    await cur.execute("SELECT * FROM telemetry.write_points_stage()")
                elif mode == "hybrid":
                    await cur.execute(_INSERT)
                    await cur.execute(_HYBRID[0])
                    await cur.execute("SELECT pg_temp.hybrid_rollups()")
                else:
                    await cur.execute(_INSERT)
                    await cur.execute(_MARK)
            if this.measured:
                spent["writer"] += cpu(0) - before
                points += len(this.rows)
            before = cpu(1)
            if mode != "today" and this.build_before is not None:
                await _refresh(bg, mode, this.build_before)
            if mode in ("today", "additive") and (r + 1) % 30 == 0:
                await _compact(bg)
            if this.measured:
                spent["background"] += cpu(1) - before
        if mode == "hybrid":  # the last minute closes too (its row holds only its first transaction's points)
            before = cpu(1)
            await _refresh(bg, mode, FAR)
            spent["background"] += cpu(1) - before
        if mode in ("hourly", "hybrid"):
            # Every hour built once from its minutes, as if it had just closed: the whole run's points share its cost
            # (in a steady state an hour's 3,600 points per series would). hybrid: only the hours marked stale.
            before = cpu(1)
            await bg.execute(_HOURS_FROM_MINUTES if mode == "hourly" else _STALE_HOURS_FROM_MINUTES)
            spent["hours at close"] = cpu(1) - before
            everything = await (await conn.execute("SELECT count(*) FROM telemetry.points")).fetchone()
            spent["hours at close"] *= points / (everything[0] if everything else points)
        wrong = {}
        for width, table in (("1 minute", "telemetry.rollup_minute"), ("1 hour", "telemetry.rollup_hour")):
            if mode == "minutes" and table.endswith("hour"):
                continue
            # Today's writes merge every point at once; the others build a minute (and add it to its hour) once closed.
            until = load.checked_before(start) if mode not in ("today", "hybrid") else FAR
            statement = _WRONG.format(table=table)
            row = await (await conn.execute(statement, {"width": width, "before": until})).fetchone()
            wrong[f"{width} buckets not counting what raw counts"] = float(row[0] if row else -1)
    return {k: v / points * 1e6 for k, v in spent.items()} | wrong


def main() -> None:
    """Each mode asked for (all by default) on a fresh durable PostgreSQL, one after the other."""
    args = sys.argv[1:]
    load = args.pop(0) if args and args[0] in LOADS else "single"
    for mode in args or MODES:
        root = Path(tempfile.mkdtemp(prefix="telemetry-dirty-minutes-"))
        server = start_postgres(root / "pg", durable=True)
        try:
            migrate(server.url)
            result = asyncio.run(_run(server.url, mode, LOADS[load]))
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
        total = result["writer"] + result["background"] + result.get("hours at close", 0.0)
        figures = ", ".join(f"{k} {v:.2f}" for k, v in result.items())
        print(
            f"{load}, {mode}: µs of PostgreSQL CPU per point: {figures}; writer + background (+ hours at close) {total:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
