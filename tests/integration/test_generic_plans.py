"""The generic plans of the gateway's device-filtered statements that may be server-side prepared.

psycopg prepares a statement the 5th time a connection runs it (or at once with ``prepare=True``), and
PostgreSQL may then run one generic plan, made without the parameters' values, for every call. For a
device-filtered statement over an unbounded time range that plan must still find the device through an
index: the trap (docs/benchmarks-big-queries.md, docs/benchmarks-q2-prepare.md) was a generic plan scanning
rollup_hour's (metric, hour) index with the device as a *filter*, reading every device's rows of the metric.

Each check runs ``EXPLAIN (GENERIC_PLAN)`` (PostgreSQL 16) of the real statement text, in a database of the
test's own holding 150 devices x 10 metrics, rows in time order (as ingestion writes them), vacuumed and
analysed (an all-visible table is what makes an index-only scan of a (metric, hour) index look cheapest).
"""

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from gateway.query_plan import PERCENTILES, Plan, Source
from gateway.views import csv_export, device_metrics, history, latest, stats
from gateway.views.aggregates import Filter, _batched, _points_in, _prepare, _query, _statement
from gateway.views.alerts import AlertFilters, list_alerts
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from tests.support.eventually import eventually
from tests.support.own_database import own_database

DEVICES, METRICS, HOURS, MINUTES = 150, 10, 24, 20
T0 = datetime(2031, 3, 4, tzinfo=UTC)
# The tables a device-filtered statement reads by device (points: its partitions, points_p<day>).
_BY_DEVICE = re.compile(r"^(rollup_hour|rollup_minute|points_p\d+|latest_values|stats_series|stats_hour|alerts)$")
_LOADED = ["telemetry.rollup_hour", "telemetry.rollup_minute", "telemetry.latest_values", "telemetry.stats_series",
           "telemetry.stats_hour", "telemetry.alerts"]  # fmt: skip
_PARTITION = "telemetry.points_p" + T0.strftime("%Y%m%d")
_LOAD = [
    "SELECT telemetry.ensure_partition(%(day)s::date)",
    # hour-major, as ingestion writes them: the heap is in bucket order, the (metric, bucket) indexes correlate
    """INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)
       SELECT 'd' || d, 'm' || m, %(t0)s + h * interval '1 hour', 60, 60.0 * d, 0, d, '{"z": 60}'
       FROM generate_series(0, %(hours)s - 1) h, generate_series(0, %(devices)s - 1) d,
            generate_series(0, %(metrics)s - 1) m""",
    """INSERT INTO telemetry.rollup_minute (device_id, metric_name, bucket, count, sum, min, max, sketch)
       SELECT 'd' || d, 'm' || m, %(t0)s + h * interval '1 minute', 1, d, d, d, '{"z": 1}'
       FROM generate_series(0, %(minutes)s - 1) h, generate_series(0, %(devices)s - 1) d, generate_series(0, %(metrics)s - 1) m""",
    """INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, src_seq)
       SELECT 'd' || d, 'm' || m, %(t0)s + h * interval '1 minute', 0, d, 1
       FROM generate_series(0, %(minutes)s - 1) h, generate_series(0, %(devices)s - 1) d, generate_series(0, %(metrics)s - 1) m""",
    """INSERT INTO telemetry.latest_values (device_id, metric_name, time, value_type, value_num, src_seq)
       SELECT 'd' || d, 'm' || m, %(t0)s, 0, d, 1
       FROM generate_series(0, %(devices)s - 1) d, generate_series(0, %(metrics)s - 1) m""",
    """INSERT INTO telemetry.stats_series (device_id, metric_name, points, last_time, last_stored_at)
       SELECT 'd' || d, 'm' || m, 60, %(t0)s, %(t0)s
       FROM generate_series(0, %(devices)s - 1) d, generate_series(0, %(metrics)s - 1) m""",
    """INSERT INTO telemetry.stats_hour (device_id, metric_name, hour, points)
       SELECT 'd' || d, 'm' || m, %(t0)s + h * interval '1 hour', 60
       FROM generate_series(0, %(hours)s - 1) h, generate_series(0, %(devices)s - 1) d,
            generate_series(0, %(metrics)s - 1) m""",
    """INSERT INTO telemetry.alerts (alert_id, rule_id, rule_name, device_id, metric_name, level, status, kind,
                                     message, triggered_at)
       SELECT 'a' || d || '-' || k, 'r' || mod(k, 20), 'rule', 'd' || d, 'm1', 'warning', 'resolved', 'threshold',
              'm', %(t0)s + k * interval '1 minute'
       FROM generate_series(0, 39) k, generate_series(0, %(devices)s - 1) d""",
]


@pytest.fixture(scope="module")
def plans_db(settings: Settings) -> Iterator[str]:
    assert settings.database_url
    with own_database(settings.database_url, "generic_plans") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            params = {
                "day": T0.date(),
                "t0": T0,
                "hours": HOURS,
                "minutes": MINUTES,
                "devices": DEVICES,
                "metrics": METRICS,
            }
            for statement in _LOAD:
                conn.execute(statement, params)
            all_visible(conn, [*_LOADED, _PARTITION])
        yield url


def all_visible(conn: psycopg.Connection, tables: list[str]) -> None:
    """VACUUM ANALYZE until every page of ``tables`` is all-visible: the worst case, where an index-only scan
    looks cheapest. (A snapshot open in this database, e.g. autovacuum's own ANALYZE of the new rows, keeps
    VACUUM from marking pages; polled, not assumed.)"""
    names = ", ".join(tables)
    check = "SELECT bool_and(relallvisible >= relpages) FROM pg_class WHERE oid = ANY(%s::regclass[])"

    def vacuumed() -> bool:
        conn.execute(f"VACUUM ANALYZE {names}".encode())  # names of our own constants
        row = conn.execute(check, (tables,)).fetchone()
        return bool(row and row[0])

    eventually(vacuumed, timeout=60, interval=0.2, what=f"every page of {names} all-visible")


def _numbered(text: str) -> tuple[str, int]:
    """psycopg's placeholders (%(name)s or %s) as PostgreSQL's $n, the same name the same number."""
    names: list[str] = []
    positional = 0

    def number(match: re.Match[str]) -> str:
        nonlocal positional
        if match.group(1) is None:
            positional += 1
            return f"${positional}"
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"%(?:\((\w+)\))?s", number, text), max(positional, len(names))


def generic_plan(conn: psycopg.Connection, statement: str | bytes | sql.Composable) -> dict[str, Any]:
    if isinstance(statement, bytes):
        text = statement.decode()
    else:
        text = statement if isinstance(statement, str) else statement.as_string(conn)
    numbered, _ = _numbered(text)
    row = conn.execute(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {numbered}".encode()).fetchone()  # our own text
    assert row is not None
    return row[0][0]["Plan"]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def device_traps(plan: dict[str, Any]) -> list[str]:
    """Scans of a by-device table that do not find the device through an index (empty: none)."""
    traps = []
    for node in _nodes(plan):
        table = node.get("Relation Name", "")
        if not _BY_DEVICE.match(table):
            continue
        kind = node["Node Type"]
        found_by = node.get("Index Cond", "") + node.get("Recheck Cond", "")
        if kind == "Seq Scan":
            traps.append(f"{kind} on {table}")
        elif "device_id" in node.get("Filter", ""):
            traps.append(f"{kind} on {table} filters on the device: {node['Filter']}")
        elif "device_id" not in found_by:
            traps.append(f"{kind} on {table} without the device in its index condition: {found_by or '-'}")
    return traps


def _aggregate_statements() -> Iterator[tuple[str, bytes]]:
    """Every aggregates statement that names devices and is not unnamed (prepare is not False)."""
    for source in Source:
        for series in (Filter.DEVICES, Filter.ONE_SERIES):
            if _prepare(source, series) is False:
                continue
            if source is not Source.RAW:
                yield f"{source} {series} points_in", _points_in(source, series)
            for aggregation in ("avg", "count", *PERCENTILES):
                for per_device in (True, False):
                    for tags in (False, True) if source is Source.RAW else (False,):
                        label = f"{source} {series} {aggregation} per_device={per_device} tags={tags}"
                        yield label, _query(Plan(source, None), aggregation, per_device, series, tags)
                    if series is Filter.ONE_SERIES and source is not Source.RAW:  # batched (series_batches.py)
                        yield (
                            f"{source} batched {aggregation} per_device={per_device}",
                            _batched(Plan(source, None), aggregation, per_device),
                        )


def test_prepared_aggregate_statements_find_the_device_through_an_index(plans_db: str) -> None:
    checked = 0
    with psycopg.connect(plans_db, autocommit=True) as conn:
        for label, statement in _aggregate_statements():
            plan = generic_plan(conn, statement)
            assert device_traps(plan) == [], label
            assert any(_BY_DEVICE.match(n.get("Relation Name", "")) for n in _nodes(plan)), label  # a scan was seen
            checked += 1
    # One series is prepared for every source: the loop above did see it (not an empty selection).
    assert checked >= 3 * 6 and _prepare(Source.HOUR, Filter.ONE_SERIES) is True


def test_a_rollup_count_reads_raw_points_only_through_the_partial_indexes(plans_db: str) -> None:
    """A count from rollups adds the non-numeric points (migration 0021): its scan of the points partitions must use
    an index that holds non-numeric rows only, or a numeric series' count would read every raw point it rolled up
    (the table above is all numeric: any other index would be a full read of the range)."""
    checked = 0
    with psycopg.connect(plans_db, autocommit=True) as conn:
        partial = {
            row[0]
            for row in conn.execute(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass AND indpred IS NOT NULL",
                (_PARTITION,),
            )
        }
        assert len(partial) == 2, partial  # (device, metric, time) and (metric, time)
        for source in (Source.HOUR, Source.MINUTE):
            for series in Filter:
                for per_device in (True, False):
                    plan = generic_plan(conn, _query(Plan(source, None), "count", per_device, series, False))
                    scans = [n for n in _nodes(plan) if n.get("Relation Name", "").startswith("points_p")]
                    assert scans, (source, series)
                    for scan in scans:
                        assert scan["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), scan
                        indexes = [f"telemetry.{n['Index Name']}" for n in _nodes(scan) if "Index Name" in n]
                        assert indexes and all(i in partial for i in indexes), (source, series, indexes, partial)
                        checked += 1
    assert checked >= 8


def test_the_check_sees_the_trap_of_a_covering_metric_index(plans_db: str) -> None:
    """With migration 0014's covering (metric, hour) index back, the generic plans are the trap again, and the
    check above fails: an index-only scan of that index (device_id included, no heap) undercuts the primary
    key, whose rows come from the heap, even for the one-series statement. Which index a generic plan takes
    is the schema's and the statistics' doing, hence a check of the real statements on the real schema."""
    hour = Plan(Source.HOUR, None)
    with psycopg.connect(plans_db, autocommit=True) as conn:
        conn.execute(
            "CREATE INDEX trap_covering ON telemetry.rollup_hour (metric_name, bucket) "
            "INCLUDE (device_id, count, sum, min, max)"
        )
        try:
            all_visible(conn, ["telemetry.rollup_hour"])
            for series in (Filter.DEVICES, Filter.ONE_SERIES):
                traps = device_traps(generic_plan(conn, _statement(hour, "avg", True, series)))
                assert any("filters on the device" in t for t in traps), (series, traps)
        finally:
            conn.execute("DROP INDEX telemetry.trap_covering")
            conn.execute("ANALYZE telemetry.rollup_hour")


def test_other_prepared_device_statements_find_the_device_through_an_index(plans_db: str) -> None:
    """The gateway's other statements with a device filter that are prepared (prepare=True) or auto-prepared.

    Not here: the CSV export's rows (a named cursor: DECLARE, never prepared) and the backtest's statements
    (a connection of its own per backtest, each statement run once: never prepared).
    """
    statements = {
        "latest value (prepare=True)": latest._LATEST,
        "latest-value cache fill (prepare=True)": latest._FILL_BYTES,
        "latest-value cache fills, batched (prepare=True)": latest._FILL_BATCH,
        "device metrics (prepare=True)": device_metrics._METRICS,
        "device stats (prepare=True)": stats._DEVICE,
        "raw points of devices (auto)": history.raw_statement(devices=True, tags=False),
        "raw points of devices with tags (auto)": history.raw_statement(devices=True, tags=True),
        "CSV export: any points? (auto)": csv_export._EXISTS,
    }
    with psycopg.connect(plans_db, autocommit=True) as conn:
        for label, statement in statements.items():
            plan = generic_plan(conn, statement)
            assert device_traps(plan) == [], label
            assert any(_BY_DEVICE.match(n.get("Relation Name", "")) for n in _nodes(plan)), label


async def test_the_alert_list_is_never_prepared(plans_db: str) -> None:
    """GET /alerts?device_id=: its `(%(device_id)s IS NULL OR device_id = …)` text has a generic plan that reads
    every alert; unnamed, each call is planned with its values (the NULL tests fold away, alerts_by_device)."""
    from gateway.views.alerts import _COUNTS

    with psycopg.connect(plans_db, autocommit=True) as conn:
        assert device_traps(generic_plan(conn, _COUNTS)) != []  # the generic plan would be the trap
    pool = make_pool(plans_db, max_size=1, autocommit=True)
    await pool.open(wait=True)
    try:
        for _ in range(8):  # more than psycopg's prepare_threshold (5)
            page = await list_alerts(pool, AlertFilters(device_id="d7"), limit=10, offset=0)
            assert page.total == 40 and {a.device_id for a in page.alerts} == {"d7"}
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%alerts%'")
            assert await cur.fetchall() == []
    finally:
        await pool.close()


def test_placeholders_are_numbered_by_name() -> None:
    assert _numbered("a = %(x)s AND b < %(y)s AND c >= %(x)s") == ("a = $1 AND b < $2 AND c >= $1", 2)
    assert _numbered("a = %s AND b = %s") == ("a = $1 AND b = $2", 2)
