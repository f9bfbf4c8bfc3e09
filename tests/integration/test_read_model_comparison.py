"""The read-model comparisons the cluster fault test relies on (tests/support/read_models.py) catch a bad row.

Points go in through the ingest worker's own write path (rollups merged in that transaction) and latest
values through their projection; then single rows are corrupted the ways a fault could leave them (a sum
counted twice, a lost hour row, a stray row, a skewed sketch, a stale latest value) and each comparison must
name exactly those rows, and nothing while the models are right.
"""

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import AsyncConnectionPool

from ingest_worker.notices import build_notice
from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from projection_worker.projections import latest_values
from telemetry_core.settings import Settings
from telemetry_schemas.values import Point
from tests.support.ids import unique
from tests.support.read_models import latest_mismatches, rollup_mismatches

T0 = datetime(2031, 9, 1, 7, 58, tzinfo=UTC)  # the minutes span an hour boundary: two hour rows


async def stored(pool: AsyncConnectionPool, device: str) -> None:
    """Two messages of one metric over four minutes, written and projected as the workers do."""
    notices = []
    for seq, offsets in ((1, range(0, 120, 10)), (2, range(120, 240, 10))):
        points = [Point(timestamp=T0 + timedelta(seconds=s), metric_name="m", value=float(s % 7)) for s in offsets]
        rows = RowSet()
        for p in points:
            rows.add(device, p, seq)
        async with pool.connection() as conn:
            await PartitionCache().ensure(conn, rows.days())
            await write_rows(conn, rows.rows())
        notices.append(build_notice(device, seq, points, rollups_applied=True))
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await latest_values.apply(cur, [notices])


async def test_each_corrupted_rollup_or_latest_row_is_named(pool: AsyncConnectionPool, settings: Settings) -> None:
    device, other = unique("dev"), unique("dev")
    await stored(pool, device)
    await stored(pool, other)
    minute, hour = T0 + timedelta(minutes=1), T0.replace(minute=0)
    url = str(settings.database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert rollup_mismatches(url, [device, other]) == []
        assert latest_mismatches(url, [device, other]) == []
        assert conn.execute("SELECT count(*) FROM telemetry.rollup_minute WHERE device_id = %s", (device,)).fetchone() \
            == (4,)  # fmt: skip
        conn.execute(
            "UPDATE telemetry.rollup_minute SET sum = sum + 1 WHERE device_id = %s AND bucket = %s", (device, minute)
        )
        conn.execute("DELETE FROM telemetry.rollup_hour WHERE device_id = %s AND bucket = %s", (device, hour))
        conn.execute(
            "INSERT INTO telemetry.rollup_minute (device_id, metric_name, bucket, count, sum, min, max, sketch) "
            "VALUES (%s, 'ghost', %s, 1, 1, 1, 1, '{}')",
            (device, minute),
        )
        conn.execute(  # a sketch counting one value under another key: count, sum, min and max still right
            "UPDATE telemetry.rollup_minute SET sketch = jsonb_set(sketch, '{999}', '1') WHERE device_id = %s "
            "AND bucket = %s",
            (other, minute),
        )
        conn.execute("UPDATE telemetry.latest_values SET value_num = -1 WHERE device_id = %s", (other,))
        found = rollup_mismatches(url, [device, other])
        named = {line.split(": ")[0]: line.split(": ")[1].split(" ")[0] for line in found}
        assert named == {
            f"telemetry.rollup_minute {device}/ghost/{minute.isoformat()}": "extra",
            f"telemetry.rollup_minute {device}/m/{minute.isoformat()}": "got",  # sum + 1
            f"telemetry.rollup_minute {other}/m/{minute.isoformat()}": "got",  # the sketch
            f"telemetry.rollup_hour {device}/m/{hour.isoformat()}": "missing,",
        }, found
        assert len(found) == 4
        (sketch,) = rollup_mismatches(url, [other])  # only the devices asked for
        assert "'999': 1" in sketch
        (stale,) = latest_mismatches(url, [device, other])
        assert stale.startswith(f"telemetry.latest_values {other}/m: got (") and "-1.0" in stale
