"""Read models compared row by row with what they must equal: a recompute from raw points, or a fresh replay.

* rollup_minute / rollup_hour are merged additively in the ingest transaction (migration 0013); the truth is
  the same figures computed from telemetry.points (count, sum, min, max exactly; the sketch as its key → count
  map, also exactly: both sides count the same telemetry.dd_key of each numeric value). An hour's sketch is its
  row's and its pending sketches' (migration 0023), whether or not they have been compacted yet.
* latest_values (projection from NOTICES) must hold, per (device, metric), the stored point with the newest
  (time, src_seq): the order its projection and the points upsert both use.
* Any read model against a fresh replay: tests/support/dry_replay.py rebuilds it the way `telemetry replay`
  does and compares the rows of a query (``LATEST``, ``METRIC_HOURS``) with ``row_differences``.

Each comparison reads in one REPEATABLE READ transaction (one snapshot: an ingest committing meanwhile cannot
make the raw side and the model side disagree) and returns its differences as readable lines (empty: equal),
so an assertion names the rows.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

Key = tuple[Any, ...]
Rows = dict[Key, tuple[Any, ...]]

# Per (device, metric, bucket): the figures of the numeric points (value_type 0 int, 1 float), the sketch
# re-aggregated from per-key counts as telemetry.refresh_rollups builds it.
_ROLLUP_FROM_RAW = """
SELECT device_id, metric_name, b, sum(n)::bigint, sum(total), min(lo), max(hi), jsonb_object_agg(key, n)
FROM (
    SELECT device_id, metric_name, date_trunc({unit}, time, 'UTC') AS b, telemetry.dd_key(value_num) AS key,
           count(*) AS n, sum(value_num) AS total, min(value_num) AS lo, max(value_num) AS hi
    FROM telemetry.points WHERE device_id = ANY(%s) AND value_type IN (0, 1) GROUP BY 1, 2, 3, 4
) s GROUP BY 1, 2, 3
"""
_ROLLED = "SELECT device_id, metric_name, bucket, count, sum, min, max, sketch FROM {table} WHERE device_id = ANY(%s)"
# An hour's sketch is its row's plus its pending ones' (migration 0023), as the percentile queries read it; a pending
# sketch without its hour row is a stray row of its own.
_HOURS_ROLLED = """
SELECT r.device_id, r.metric_name, r.bucket, r.count, r.sum, r.min, r.max, coalesce((
    SELECT jsonb_object_agg(k.key, k.n) FROM (
        SELECT e.key, sum(e.value::bigint) AS n
        FROM (SELECT r.sketch UNION ALL SELECT p.sketch FROM telemetry.rollup_hour_pending p
              WHERE p.device_id = r.device_id AND p.metric_name = r.metric_name AND p.bucket = r.bucket) s,
             jsonb_each_text(s.sketch) e
        GROUP BY 1
    ) k), '{}')
FROM telemetry.rollup_hour r WHERE r.device_id = ANY(%s)
UNION ALL
SELECT p.device_id, p.metric_name, p.bucket, NULL, NULL, NULL, NULL, p.sketch FROM telemetry.rollup_hour_pending p
WHERE p.device_id = ANY(%s) AND NOT EXISTS (SELECT FROM telemetry.rollup_hour r
    WHERE r.device_id = p.device_id AND r.metric_name = p.metric_name AND r.bucket = p.bucket)
"""
ROLLUP_TABLES = (("minute", "telemetry.rollup_minute"), ("hour", "telemetry.rollup_hour"))

# No tags / metadata is NULL in points (the writer stores none) and {} in latest_values (the notice's empty map).
_LATEST_COLUMNS = (
    "time, value_type, value_num, value_text, value_bool, value_json, unit, coalesce(tags, '{}'), "
    "coalesce(metadata::jsonb, '{}'), src_seq"
)
_LATEST_FROM_RAW = f"""
SELECT DISTINCT ON (device_id, metric_name) device_id, metric_name, {_LATEST_COLUMNS}
FROM telemetry.points WHERE device_id = ANY(%s) ORDER BY device_id, metric_name, time DESC, src_seq DESC
"""
LATEST = f"SELECT device_id, metric_name, {_LATEST_COLUMNS} FROM telemetry.latest_values WHERE device_id = ANY(%s)"
METRIC_HOURS = "SELECT metric_name, bucket, count, sum, min, max, devices FROM telemetry.rollup_metric_hour"


def keyed(rows: Iterable[Sequence[Any]], key_columns: int) -> Rows:
    """Rows as {first ``key_columns`` values: the rest}; a key seen twice is an error (a duplicate row)."""
    out: Rows = {}
    for row in rows:
        key, value = tuple(row[:key_columns]), tuple(row[key_columns:])
        if key in out:
            raise AssertionError(f"two rows for {key}: {out[key]} and {value}")
        out[key] = value
    return out


def show_key(key: Key) -> str:
    """A row key as ``a/b/2031-09-01T07:59:00+00:00`` (times in ISO form, whatever the session's time zone)."""
    return "/".join(part.astimezone(UTC).isoformat() if isinstance(part, datetime) else str(part) for part in key)


def row_differences(what: str, want: Rows, got: Rows) -> list[str]:
    """Each row missing from ``got``, extra in it, or different from ``want``: ``<what> <key>: <how>`` lines."""
    lines = [f"{what} {show_key(k)}: missing, want {want[k]}" for k in sorted(want.keys() - got.keys(), key=show_key)]
    lines += [f"{what} {show_key(k)}: extra {got[k]}" for k in sorted(got.keys() - want.keys(), key=show_key)]
    lines += [
        f"{what} {show_key(k)}: got {got[k]}, want {want[k]}"
        for k in sorted(want.keys() & got.keys(), key=show_key)
        if got[k] != want[k]
    ]
    return lines


def _one_snapshot(database_url: str) -> psycopg.Connection[Any]:
    """A connection whose transaction reads one snapshot throughout (REPEATABLE READ; read only)."""
    conn = psycopg.connect(database_url)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def rollup_mismatches(database_url: str, devices: list[str]) -> list[str]:
    """Every rollup_minute and rollup_hour row of ``devices`` that differs from a recompute from raw points."""
    lines: list[str] = []
    with _one_snapshot(database_url) as conn, conn.transaction():
        for unit, table in ROLLUP_TABLES:
            want = conn.execute(sql.SQL(_ROLLUP_FROM_RAW).format(unit=sql.Literal(unit)), (devices,)).fetchall()
            if unit == "hour":
                got = conn.execute(_HOURS_ROLLED, (devices, devices)).fetchall()
            else:
                got = conn.execute(sql.SQL(_ROLLED).format(table=sql.SQL(table)), (devices,)).fetchall()
            lines += row_differences(table, keyed(want, 3), keyed(got, 3))
    return lines


def latest_mismatches(database_url: str, devices: list[str]) -> list[str]:
    """Every latest_values row of ``devices`` that is not the newest stored point of its (device, metric).

    The projection follows the ingest by a moment: poll this (``eventually``) while points may still arrive.
    """
    with _one_snapshot(database_url) as conn, conn.transaction():
        want = keyed(conn.execute(_LATEST_FROM_RAW, (devices,)).fetchall(), 2)
        got = keyed(conn.execute(LATEST, (devices,)).fetchall(), 2)
    return row_differences("telemetry.latest_values", want, got)
