"""The worker's rollup deltas (ingest_worker/rollup_deltas.py) against PostgreSQL's own arithmetic.

A fresh batch's minute and hour rows are computed in Python and merged as they are (migration 0021), so the
sketch keys must be the ones telemetry.dd_key gives on the server, and the buckets the UTC minutes and hours
date_trunc gives, whatever offset a timestamp was sent with.
"""

import math
from datetime import UTC, datetime, timedelta, timezone

import hypothesis
import psycopg
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from ingest_worker.rollup_deltas import dd_key
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.settings import Settings
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.read_models import rollup_mismatches

# Around bucket edges: exact powers of 1.02 and their neighbours, the zero band, extremes.
EDGES = [0.0, 1e-9, -1e-9, 1e-10, 2e-9, 1.0, -1.0, 1.02, 1.02**2, 1.02**-3, 5e-324, 1.7976931348623157e308]
EDGES += [s * math.nextafter(1.02**k, d) for k in range(-40, 400, 7) for d in (0.0, math.inf) for s in (1, -1)]


def server_keys(database_url: str, values: list[float]) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT telemetry.dd_key(v) FROM unnest(%s::float8[]) WITH ORDINALITY AS u(v, i) ORDER BY i",
                            (values,)).fetchall()  # fmt: skip
    return [r[0] for r in rows]


def test_the_sketch_key_is_the_servers_at_the_bucket_edges(settings: Settings) -> None:
    assert settings.database_url
    assert [dd_key(v) for v in EDGES] == server_keys(settings.database_url, EDGES)


@hypothesis.settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300))
def test_the_sketch_key_is_the_servers_for_any_value(settings: Settings, values: list[float]) -> None:
    assert settings.database_url
    assert [dd_key(v) for v in values] == server_keys(settings.database_url, values)


async def test_a_fresh_batch_with_offsets_rolls_up_by_utc_minute_and_hour(pool: AsyncConnectionPool) -> None:
    device = unique("dev")
    india = timezone(timedelta(hours=5, minutes=30))
    base = datetime(2031, 9, 10, 16, 28, 0, tzinfo=india)  # 10:58 UTC: the batch crosses 11:00 UTC
    # Values with exact binary sums (multiples of 0.25), spread over many sketch keys, both signs and zero.
    points = [Point(timestamp=base + timedelta(seconds=7 * i), metric_name=f"m{i % 3}", value=(i - 40) * 0.25)
              for i in range(120)]  # fmt: skip
    points.append(Point(timestamp=base + timedelta(seconds=3), metric_name="m0", value="text is not rolled up"))
    rows = RowSet()
    rows.add_points(device, points, 42)
    async with pool.connection() as conn:
        await PartitionCache().ensure(conn, rows.days())
        inserted = await write_rows(conn, rows.rows())
        path = (await (await conn.execute("SELECT current_setting('telemetry.write_path')")).fetchone() or [""])[0]
        await conn.commit()
    assert path == "copy"
    hours = {(t.astimezone(UTC).replace(minute=0, second=0, microsecond=0), p.metric_name) for p in points
             for t in [p.timestamp]}  # fmt: skip
    assert sum(n for per_hour in inserted.values() for _, n in per_hour) == len(points)
    assert {(h, m) for (seq, m), per_hour in inserted.items() for h, _ in per_hour} == {(h, m) for h, m in hours}
    assert rollup_mismatches(str(pool.conninfo), [device]) == []
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT bucket, sum(count) FROM telemetry.rollup_hour WHERE device_id = %s GROUP BY 1 ORDER BY 1", (device,)
        )
        by_hour = await cur.fetchall()
    # 10:58:00-11:11:53 UTC: the first 18 numeric points fall before 11:00.
    assert by_hour == [(datetime(2031, 9, 10, 10, tzinfo=UTC), 18), (datetime(2031, 9, 10, 11, tzinfo=UTC), 102)]
