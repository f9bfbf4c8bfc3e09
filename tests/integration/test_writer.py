"""COPY + upsert against the real points table: later value wins, partitions appear on demand."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from ingest_worker.rows import RowSet
from ingest_worker.writer import PartitionCache, write_rows
from telemetry_core.metrics import WORKER_REGISTRY
from telemetry_schemas.values import Point
from tests.support.ids import unique

T0 = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


async def stored(pool: AsyncConnectionPool, device: str) -> list[tuple]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT metric_name, time, value_num, value_text, unit, tags FROM telemetry.points "
            "WHERE device_id = %s ORDER BY metric_name, time",
            (device,),
        )
        return await cur.fetchall()


async def write(pool: AsyncConnectionPool, cache: PartitionCache, rows: RowSet) -> None:
    async with pool.connection() as conn:
        await cache.ensure(conn, rows.days())
        await write_rows(conn, rows.rows())


async def test_duplicate_keys_keep_the_later_value(pool: AsyncConnectionPool) -> None:
    device, cache = unique("dev"), PartitionCache()
    first = RowSet()
    first.add(device, Point(timestamp=T0, metric_name="t", value=1.0), 1)
    # The same key twice in one batch: ON CONFLICT refuses it, and the writer copies the later one only.
    first.add(device, Point(timestamp=T0, metric_name="t", value=2.0, unit="c"), 1)
    first.add(device, Point(timestamp=T0 + timedelta(days=1), metric_name="t", value=3.0), 1)
    assert (len(first), len(first.latest())) == (3, 2)
    await write(pool, cache, first)
    second = RowSet()
    second.add(device, Point(timestamp=T0, metric_name="t", value="later", tags={"a": "b"}), 2)
    await write(pool, cache, second)
    assert await stored(pool, device) == [
        ("t", T0, None, "later", None, {"a": "b"}),
        ("t", T0 + timedelta(days=1), 3.0, None, None, None),
    ]


async def test_an_older_message_committed_late_does_not_override(pool: AsyncConnectionPool) -> None:
    # A redelivered (or parallel) older message may commit after a newer one: stream order still wins.
    device, cache = unique("dev"), PartitionCache()
    newer, older = RowSet(), RowSet()
    newer.add(device, Point(timestamp=T0, metric_name="t", value="new"), 20)
    older.add(device, Point(timestamp=T0, metric_name="t", value="old"), 10)
    await write(pool, cache, newer)
    await write(pool, cache, older)
    assert [r[3] for r in await stored(pool, device)] == ["new"]
    both = RowSet()  # the same inside one batch, whatever order the messages arrive in
    both.add(device, Point(timestamp=T0, metric_name="u", value="new"), 20)
    both.add(device, Point(timestamp=T0, metric_name="u", value="old"), 10)
    await write(pool, cache, both)
    assert [r[3] for r in await stored(pool, device)] == ["new", "new"]


def rewrites_counted() -> float:
    return WORKER_REGISTRY.get_sample_value("telemetry_ingest_keyed_rewrites_total") or 0.0


async def test_a_repeated_key_is_written_again_one_row_per_key(pool: AsyncConnectionPool) -> None:
    """The batch is copied as it came; PostgreSQL refusing a repeated key makes the writer copy it once more,
    keyed: the first statement fails (counted by the server) and nothing of it is kept."""
    device, cache = unique("dev"), PartitionCache()
    rows = RowSet()
    rows.add(device, Point(timestamp=T0, metric_name="t", value=1.0), 5)
    rows.add(device, Point(timestamp=T0, metric_name="u", value=7.0), 5)
    rows.add(device, Point(timestamp=T0, metric_name="t", value=2.0), 6)  # a later message: wins
    rows.add(device, Point(timestamp=T0, metric_name="u", value=8.0), 4)  # an earlier one, redelivered: loses
    announced: list[str] = []

    async def before_commit() -> None:
        announced.append("once")

    async with pool.connection() as conn:
        await cache.ensure(conn, rows.days())
        rewrites = rewrites_counted()
        inserted = await write_rows(conn, rows.rows(), before_commit=before_commit())
        assert rewrites_counted() == rewrites + 1  # the first attempt was refused
        unique_keys = RowSet()
        unique_keys.add(device, Point(timestamp=T0 + timedelta(seconds=1), metric_name="t", value=3.0), 7)
        await write_rows(conn, unique_keys.rows())
        assert rewrites_counted() == rewrites + 1  # distinct keys: written at the first attempt
    assert [(r[0], r[2]) for r in await stored(pool, device)] == [("t", 2.0), ("t", 3.0), ("u", 7.0)]
    assert announced == ["once"]  # awaited by the attempt that committed only
    assert sorted((seq, metric) for seq, metric in inserted) == [(5, "u"), (6, "t")]


async def test_a_run_of_equal_tags_is_dumped_once_and_stored_as_sent(pool: AsyncConnectionPool) -> None:
    device, cache = unique("dev"), PartitionCache()
    rows = RowSet()
    tags = [{"site": "a"}, {"site": "a"}, {}, {"site": "b", "k": "v"}, {"site": "a"}]
    rows.add_points(
        device,
        [Point(timestamp=T0 + timedelta(seconds=i), metric_name="t", value=i, tags=t) for i, t in enumerate(tags)],
        1,
    )
    dumped = [row[9] for row in rows.rows()]
    assert dumped[0] is dumped[1] and dumped[2] is None  # equal tags in a row share one dumped value
    assert [None if d is None else json.loads(bytes(d[1:])) for d in dumped] == [t or None for t in tags]
    await write(pool, cache, rows)
    assert [r[5] for r in await stored(pool, device)] == [t or None for t in tags]


async def test_partitions_are_created_for_new_days(pool: AsyncConnectionPool) -> None:
    device, cache = unique("dev"), PartitionCache()
    day = datetime(2077, 7, 7, 23, 59, 59, tzinfo=UTC)
    rows = RowSet()
    rows.add(device, Point(timestamp=day, metric_name="t", value=1), 1)
    await write(pool, cache, rows)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass('telemetry.points_p20770707') IS NOT NULL")
        assert (await cur.fetchone()) == (True,)
    assert await stored(pool, device) == [("t", day, 1.0, None, None, None)]


async def test_worker_creates_partitions_ahead(stack, servers) -> None:
    import psycopg

    from tests.support.eventually import eventually

    ahead = datetime.now(UTC).date() + timedelta(days=7)

    def exists() -> bool:
        with psycopg.connect(servers.database_url) as conn:
            name = f"telemetry.points_p{ahead:%Y%m%d}"
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]

    eventually(exists, timeout=30, what="partition a week ahead")


async def test_a_batch_many_copy_buffers_long_arrives_whole(pool: AsyncConnectionPool) -> None:
    # write_rows hands the COPY its formatter's chunks itself (ingest_worker/writer.py): a batch that fills the
    # buffer many times over must arrive row for row, every value type included, first and last rows too.
    device, cache, rows = unique("dev"), PartitionCache(), RowSet()
    values: list[object] = [1.5, 7, "text " * 20, True, {"k": [1, 2]}, {"lat": 1.0, "lon": 2.0}]
    sent = [
        Point(timestamp=T0 + timedelta(milliseconds=i), metric_name="t", value=values[i % len(values)],
              unit="u" if i % 2 else None, tags={"n": str(i)} if i % 3 else {})
        for i in range(6000)
    ]  # fmt: skip
    rows.add_points(device, sent, 1)
    await write(pool, cache, rows)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT time, value_type, value_num, value_text, value_bool, value_json::text, unit, tags "
            "FROM telemetry.points WHERE device_id = %s ORDER BY time",
            (device,),
        )
        got = await cur.fetchall()
    assert len(got) == len(sent)
    for point, (t, _, num, text, flag, obj, unit, tags) in zip(sent, got, strict=True):
        v = point.value
        back = (
            json.loads(obj) if obj is not None else (flag if flag is not None else (text if text is not None else num))
        )
        assert (t, back, type(back), unit, tags or {}) == (point.timestamp, v, type(v) if type(v) is not int else float,
                                                           point.unit, point.tags)  # fmt: skip


async def test_a_failing_before_commit_rolls_the_transaction_back(pool: AsyncConnectionPool) -> None:
    """The ingest worker awaits its announcement to the gateways there (ingest_worker/storing.py): undelivered, the
    points must not be visible, or a gateway's query cache could answer older points than the database shows."""
    device, cache = unique("dev"), PartitionCache()
    rows = RowSet()
    rows.add(device, Point(timestamp=T0, metric_name="t", value=1.0), 1)

    async def undelivered() -> None:
        raise ConnectionError("NATS is away")

    async with pool.connection() as conn:
        await cache.ensure(conn, rows.days())
        try:
            await write_rows(conn, rows.rows(), before_commit=undelivered())
        except ConnectionError:
            pass
        else:
            raise AssertionError("the failure did not reach the caller")
    assert await stored(pool, device) == []
    async with pool.connection() as conn:  # the same rows commit once the hook succeeds
        await write_rows(conn, rows.rows(), before_commit=asyncio.sleep(0))
    assert [r[2] for r in await stored(pool, device)] == [1.0]
