"""device_stats counts each POINTS message once (projection_worker/stats_guard.py, migration 0020).

After an ingest worker's crash between publishing a transaction's notices and acknowledging its POINTS
messages, the redelivered messages are stored one at a time and their notices published again under other
message ids; the projection sees the same notice twice. And the guard forgets what the ingest consumer has
acknowledged, on a NATS server of this test's own (its ack floor is exactly what the test makes it).
"""

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from projection_worker import stats_guard
from projection_worker.projections import device_stats
from telemetry_core.embedded import EmbeddedServer, start_nats
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from telemetry_core.topology import INGEST_CONSUMER, POINTS_STREAM, ensure_topology, points_subject
from telemetry_schemas.notices import PointsStored
from telemetry_schemas.values import Point
from tests.support.ingest_writes import store_messages
from tests.support.own_database import own_database
from tests.support.servers import Servers

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
async def own_pool(servers: Servers) -> AsyncIterator[AsyncConnectionPool]:
    with own_database(servers.database_url, "guard") as url:
        pool = make_pool(url, max_size=2)
        await pool.open(wait=True)
        yield pool
        await pool.close()


async def stored_notices(pool: AsyncConnectionPool, seqs: list[int]) -> list[PointsStored]:
    """Store message ``seq`` (device d<seq>, ``seq`` points of metric m) as the ingest worker does; its notices."""

    def points(n: int) -> list[Point]:
        return [Point(timestamp=HOUR + timedelta(seconds=i), metric_name="m", value=float(i)) for i in range(n)]

    messages = [(seq, f"d{seq}", points(seq)) for seq in seqs]
    return (await store_messages(pool, messages))[1]


async def apply(pool: AsyncConnectionPool, messages: list[list[PointsStored]]) -> None:
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await device_stats.apply(cur, messages)


async def counts(pool: AsyncConnectionPool) -> tuple[dict[str, int], int, int, int]:
    """(points per device, points of the service's hour, messages and points of the minutes of storing)."""
    async with pool.connection() as conn:
        series: dict[str, int] = dict(
            await (await conn.execute("SELECT device_id, points FROM telemetry.stats_series")).fetchall()
        )
        hour = await (
            await conn.execute("SELECT coalesce(sum(points), 0) FROM telemetry.stats_service_hour")
        ).fetchone()
        minute = await (await conn.execute(
            "SELECT coalesce(sum(messages), 0), coalesce(sum(points), 0) FROM telemetry.stats_ingest_minute"
        )).fetchone()  # fmt: skip
    assert hour is not None and minute is not None
    return series, hour[0], minute[0], minute[1]


async def test_a_notice_published_again_under_another_grouping_counts_once(own_pool: AsyncConnectionPool) -> None:
    # One ingest transaction stored messages 1, 2 and 3 and published their notices as one NOTICES message.
    first = await stored_notices(own_pool, [1, 2, 3])
    await apply(own_pool, [first])
    assert await counts(own_pool) == ({"d1": 1, "d2": 2, "d3": 3}, 6, 3, 6)
    # It crashed before acknowledging them: each is stored again alone (the upsert reports its own rows as its
    # inserts, as after a crash that lost the notice) and its notice published again, alone, under a new id.
    again = [(await stored_notices(own_pool, [seq]))[0] for seq in (1, 2, 3)]
    assert [n.metrics[0].new_points for n in again] == [n.metrics[0].new_points for n in first]
    # Two of them arrive in one batch of the projection, the third with a new message 4 and twice in it.
    fourth = await stored_notices(own_pool, [4])
    await apply(own_pool, [[again[0]], [again[1]]])
    await apply(own_pool, [[again[2], fourth[0]], [again[2]]])
    assert await counts(own_pool) == ({"d1": 1, "d2": 2, "d3": 3, "d4": 4}, 10, 4, 10)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = start_nats(tmp_path / "nats")
    yield server
    server.stop()


async def ingest_acks(js: JetStreamContext, messages: int, acked: int) -> None:
    """Publish ``messages`` POINTS messages and acknowledge the first ``acked`` on the ingest consumer."""
    for i in range(messages):
        await js.publish(points_subject("guard-dev"), f'{{"n":{i}}}'.encode())
    sub = await js.pull_subscribe_bind(INGEST_CONSUMER, POINTS_STREAM)
    fetched = await sub.fetch(messages, timeout=5)
    assert [m.metadata.sequence.stream for m in fetched] == list(range(1, messages + 1))
    for msg in fetched[:acked]:
        await msg.ack_sync()


async def guarded(pool: AsyncConnectionPool) -> list[int]:
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT points_seq FROM telemetry.stats_counted_points ORDER BY 1")).fetchall()
    return [seq for (seq,) in rows]


async def test_prune_forgets_acknowledged_messages_and_those_of_a_stream_created_again(
    own_pool: AsyncConnectionPool, own_nats: EmbeddedServer
) -> None:
    nc = await nats.connect(own_nats.url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, Settings.from_env({"NATS_URL": own_nats.url}))
        await ingest_acks(js, messages=5, acked=3)
        async with own_pool.connection() as conn:
            # 1-5: counted; 99: from a POINTS stream deleted since (sequences restart when it is created again).
            await conn.execute(
                "INSERT INTO telemetry.stats_counted_points SELECT unnest(%s::bigint[])", ([1, 2, 3, 4, 5, 99],)
            )
        assert await stats_guard.prune(own_pool, js) == 4
        # 4 and 5 are not acknowledged: after a crash they come back, and their notices must still count once.
        assert await guarded(own_pool) == [4, 5]
    finally:
        await nc.close()
