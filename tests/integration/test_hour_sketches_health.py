"""/health/detailed's hour_sketches component: degraded while sketches of long-over hours wait to be folded."""

from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gateway.health import FOLD_OVERDUE, check_hour_sketches
from ingest_worker.sketch_compaction import compact_hour_sketches
from tests.support.ids import unique


@pytest.fixture
def pool(own_pool: AsyncConnectionPool) -> AsyncConnectionPool:
    """These tests count and fold every pending sketch: a database of their own (tests/integration/conftest.py)."""
    return own_pool


async def test_pending_sketches_of_a_long_over_hour_make_it_degraded_until_folded(pool: AsyncConnectionPool) -> None:
    await compact_hour_sketches(pool, min_pending=1)  # whatever other tests left pending
    healthy = await check_hour_sketches(pool)
    assert healthy.status == "healthy" and healthy.metrics["pending"] == 0

    device = unique("dev")
    hour = (datetime.now(UTC) - FOLD_OVERDUE - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    async with pool.connection() as conn:  # what a batch into an existing hour row leaves, with no worker folding
        await conn.execute(
            "INSERT INTO telemetry.rollup_hour (device_id, metric_name, bucket, count, sum, min, max, sketch)"
            " VALUES (%s, 'm', %s, 2, 3, 1, 2, %s)", (device, hour, Jsonb({"p0": 1, "p35": 1})),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO telemetry.rollup_hour_pending (device_id, metric_name, bucket, sketch) VALUES (%s, 'm', %s, %s)",
            (device, hour, Jsonb({"p35": 1})),
        )
    degraded = await check_hour_sketches(pool)
    assert degraded.status == "degraded"
    assert degraded.metrics == {"pending": 1, "oldest_hour": hour.isoformat()}
    assert degraded.detail is not None and "not being folded" in degraded.detail

    await compact_hour_sketches(pool)  # the default: hours over for an hour are folded whatever their count
    assert (await check_hour_sketches(pool)).status == "healthy"
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT sketch FROM telemetry.rollup_hour WHERE device_id = %s", (device,))
        ).fetchone()
    assert row == ({"p0": 1, "p35": 2},)
