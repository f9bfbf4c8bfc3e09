"""Rollup statements naming devices with `device_id = ANY(…)` are never server-side prepared; one series is.

The regression this guards (docs/benchmarks-big-queries.md): psycopg prepares a statement the 5th time a
connection runs it; PostgreSQL then prefers a generic plan whose guess for an unknown time range is low, and
for `rollup_hour … AND device_id = ANY(…)` that plan was an index-only scan of rollup_hour_by_metric_covering
with the device as a filter: every device's hours of the metric are read to answer one series (p99 over
30 d went 45 → 136 ms p50 in make bench). An unnamed statement is planned with its values each time.

One device and one metric (q2, /range, /aggregated?device_id=) is `device_id = $ AND metric_name = $`, whose
generic plan reads the primary key (tests/integration/test_generic_plans.py checks it on realistic
statistics): that one is prepared, and skips parse and planning (docs/benchmarks-q2-prepare.md).
"""

from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from gateway.query_plan import SKETCH_RELATIVE_ERROR, Plan, Source
from gateway.views.aggregates import aggregate, prefer_exact
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_schemas.values import Point
from tests.support.ids import unique

T0 = datetime(2031, 3, 4, 0, 0, tzinfo=UTC)
RUNS = 8  # more than psycopg's prepare_threshold (5): a statement run this often on one connection is prepared
_METRIC_HOURS = "SELECT telemetry.refresh_metric_hours(%s::text[], %s::timestamptz[])"
_PREPARED = "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s"


async def test_device_rollup_statements_are_planned_with_their_values(settings: Settings) -> None:
    assert settings.database_url
    device, other, metric = unique("dev"), unique("dev"), unique("m")
    rows = RowSet()
    values = [float(v) for v in range(1, 49)]  # one per half hour over a day: 2 per hour
    for k, v in enumerate(values):
        rows.add(device, Point(timestamp=T0 + timedelta(minutes=30 * k), metric_name=metric, value=v), 1)
        rows.add(other, Point(timestamp=T0 + timedelta(minutes=30 * k), metric_name=metric, value=2 * v), 1)
    # One connection: every call below runs on it, so psycopg would prepare whatever it runs RUNS times.
    pool = make_pool(settings.database_url, max_size=1)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await PartitionCache().ensure(conn, rows.days())
            await write_rows(conn, rows.rows())
            hours = [T0 + timedelta(hours=h) for h in range(24)]  # what the rollups projection does after a commit
            await conn.execute(_METRIC_HOURS, ([metric] * 24, hours))
        both = sorted([device, other])
        start, end = T0, T0 + timedelta(days=1)
        hour = Plan(Source.HOUR, None)
        for _ in range(RUNS):
            plan = await prefer_exact(
                pool, Plan(Source.HOUR, SKETCH_RELATIVE_ERROR), "p99", [metric], [device], start, end, 100
            )
            assert plan.source is Source.RAW  # 48 points ≤ 100: read exactly
            avg = await aggregate(
                pool, hour, aggregation="avg", interval=86_400, metrics=[metric], devices=[device], start=start, end=end
            )
            assert [(b.value, b.count) for b in avg] == [(sum(values) / 48, 48)]
            p99 = await aggregate(
                pool, hour, aggregation="p99", interval=86_400, metrics=[metric], devices=[device], start=start, end=end
            )
            assert len(p99) == 1 and abs(p99[0].value - 48.0) <= 48.0 * SKETCH_RELATIVE_ERROR  # type: ignore[operator]
            two = await aggregate(
                pool, hour, aggregation="avg", interval=86_400, metrics=[metric], devices=both, start=start, end=end
            )
            assert {(b.device_id, b.value) for b in two} == {(device, sum(values) / 48), (other, sum(values) / 24)}
            p99s = await aggregate(
                pool, hour, aggregation="p99", interval=86_400, metrics=[metric], devices=both, start=start, end=end
            )
            assert len(p99s) == 2
            across = await aggregate(
                pool, hour, aggregation="avg", interval=86_400, metrics=[metric], devices=None, start=start, end=end,
                per_device=False,
            )  # fmt: skip
            assert [(b.value, b.count) for b in across] == [(3 * sum(values) / 96, 96)]
        await _assert_prepared(pool)
    finally:
        await pool.close()


async def _assert_prepared(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        named = [r[0] for r in await (await conn.execute(_PREPARED, ("%rollup_hour%device_id = ANY%",))).fetchall()]
        one = [r[0] for r in await (await conn.execute(_PREPARED, ("%rollup_hour%device_id = $%",))).fetchall()]
        across = [r[0] for r in await (await conn.execute(_PREPARED, ("%rollup_metric_hour%",))).fetchall()]
    assert named == []
    # One series: the avg and the p99 statement (prefer_exact's count runs on the same filter: a third).
    assert len(one) == 3, one
    # The same connection did prepare the statement without devices (run as often): the check can see one.
    assert len(across) == 1
