"""One-series aggregates run in batches (gateway/views/series_batches.py) answer what each answers alone.

Real PostgreSQL, rollup rows of this test's own devices; the same requests through a pool whose reads run one
statement each and through one that batches them, concurrently, every answer compared.
"""

import asyncio
import contextlib
import gc
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from gateway.metrics import GATEWAY_REGISTRY
from gateway.query_plan import Plan, Source
from gateway.views import latest
from gateway.views.aggregates import Bucket, aggregate
from gateway.views.series_batches import Rows, SeriesBatches, batch_series_reads, batches_of
from telemetry_core.pg_pool import make_pool
from telemetry_core.settings import Settings
from tests.integration.runtime_support import until
from tests.support.ids import unique

T0 = datetime(2031, 3, 1, tzinfo=UTC)
HOURS, METRICS = 30, 3
_SEED = """
INSERT INTO telemetry.{table} (device_id, metric_name, bucket, count, sum, min, max, sketch)
SELECT %(prefix)s || d, 'm' || m, %(t0)s + h * %(step)s::interval, 1 + (d * 7 + m * 3 + h) %% 5,
       (d * 13 + m * 5 + h * 3) %% 17 - 4.5, -h, h + d + m, jsonb_build_object('p' || (d + m + h) %% 40, 1 + h %% 3, 'n' || h %% 7, 1)
FROM generate_series(0, 3) d, generate_series(0, %(metrics)s - 1) m, generate_series(0, %(hours)s - 1) h
"""


@pytest.fixture(scope="module")
def devices(settings: Settings) -> list[str]:
    prefix = unique("batch") + "-"
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for table, step in (("rollup_hour", "1 hour"), ("rollup_minute", "1 minute")):
            conn.execute(_SEED.format(table=table),
                         {"prefix": prefix, "t0": T0, "step": step, "metrics": METRICS, "hours": HOURS})  # fmt: skip
    return [f"{prefix}{d}" for d in range(4)]


async def _pool(settings: Settings, *, batch: int) -> AsyncConnectionPool:
    assert settings.database_url
    pool = make_pool(settings.database_url, min_size=3, max_size=3, timeout_s=10.0, autocommit=True)
    await pool.open(wait=True)
    batch_series_reads(pool, batch)
    return pool


@pytest.fixture
async def pools(settings: Settings) -> AsyncIterator[tuple[AsyncConnectionPool, AsyncConnectionPool]]:
    alone, batched = await _pool(settings, batch=0), await _pool(settings, batch=32)
    yield alone, batched
    await alone.close()
    await batched.close()


def _requests(devices: list[str], n: int) -> list[dict[str, object]]:
    rnd = random.Random(7)
    out: list[dict[str, object]] = []
    for _ in range(n):
        source = rnd.choice([Source.HOUR, Source.MINUTE])
        step = timedelta(hours=1) if source is Source.HOUR else timedelta(minutes=1)
        first = rnd.randrange(0, HOURS - 2)
        start, end = T0 + first * step, T0 + rnd.randrange(first + 1, HOURS + 3) * step
        out.append({
            "plan": Plan(source, None), "aggregation": rnd.choice(["avg", "min", "max", "sum", "count", "p95"]),
            "interval": int(step.total_seconds()) * rnd.choice([1, 2, 3]), "metrics": [f"m{rnd.randrange(METRICS)}"],
            "devices": [rnd.choice([*devices, "nobody"])], "start": start, "end": end,
            "per_device": rnd.random() < 0.8,
        })  # fmt: skip
    return out


async def _ask(pool: AsyncConnectionPool, r: dict[str, object]) -> list[Bucket]:
    return await aggregate(pool, **r)  # type: ignore[arg-type]


async def test_batched_answers_equal_each_statement_alone(
    pools: tuple[AsyncConnectionPool, AsyncConnectionPool], devices: list[str]
) -> None:
    alone, batched = pools
    assert batches_of(alone) is None
    requests = _requests(devices, 400)
    want = [await _ask(alone, r) for r in requests]
    assert sum(map(len, want)) > 1000, "the requests read rows"
    count0, sum0 = _observed("count"), _observed("sum")
    got = await asyncio.wait_for(asyncio.gather(*(_ask(batched, r) for r in requests)), 60)  # a lost one: fail
    assert got == want
    batches = batches_of(batched)
    assert batches is not None
    # 400 requests of 72 shapes over 3 connections: most waited and were answered with others.
    assert batches.statements < len(requests) // 2, batches.statements
    # /metrics: one observation per statement, of how many requests it answered.
    assert (_observed("count") - count0, _observed("sum") - sum0) == (batches.statements, len(requests))


def _observed(what: str) -> float:
    return GATEWAY_REGISTRY.get_sample_value(f"telemetry_query_batch_requests_{what}") or 0.0


async def test_a_request_alone_runs_at_once_in_its_own_statement(
    pools: tuple[AsyncConnectionPool, AsyncConnectionPool], devices: list[str]
) -> None:
    alone, batched = pools
    batches = batches_of(batched)
    assert batches is not None
    for r in _requests(devices, 5):
        before = batches.statements
        assert await _ask(batched, r) == await _ask(alone, r)
        assert batches.statements == before + 1


async def test_a_failing_batch_fails_its_requests_and_the_next_ones_run(settings: Settings) -> None:
    pool = await _pool(settings, batch=0)
    batches = SeriesBatches(pool, lanes=1, max_batch=8)  # one runner: the requests queue behind the first
    one, broken = b"SELECT %(device)s::text || %(metric)s::text FROM pg_sleep(0.05)", b"SELECT no_such_column"
    try:
        params = [{"device": f"d{i}", "metric": "m", "start": T0, "end": T0} for i in range(6)]
        first = asyncio.create_task(batches.rows("s", one, broken, params[0]))
        await asyncio.sleep(0.01)  # the first holds the only runner: the next ones queue, and run as one batch
        asked = asyncio.gather(*(batches.rows("s", one, broken, p) for p in params[1:]), return_exceptions=True)
        rest = await asyncio.wait_for(asked, 10)  # a batch whose error reached nobody would hang here
        assert await first == [("d0m",)], "the first ran alone: its own statement"
        assert all(isinstance(r, psycopg.errors.UndefinedColumn) for r in rest), rest
        # The runner goes on: the next request runs (alone again) and is answered.
        assert await batches.rows("s", one, broken, params[0] | {"device": "d9"}) == [("d9m",)]
        assert batches.statements == 3
    finally:
        await pool.close()


def _params(device: str) -> dict[str, object]:
    return {"device": device, "metric": "m", "start": T0, "end": T0}


async def test_a_request_given_up_on_does_not_disturb_its_batch(settings: Settings) -> None:
    pool = await _pool(settings, batch=0)
    batches = SeriesBatches(pool, lanes=1, max_batch=8)
    one = b"SELECT %(device)s::text, pg_sleep(0.05)"
    many = b"SELECT q.i, q.device, 0 FROM unnest(%(i)s::int4[], %(devices)s::text[], %(ends)s::text[]) q(i, device)"
    try:
        first = asyncio.create_task(batches.rows("s", one, many, _params("a")))
        await asyncio.sleep(0.01)  # the first holds the only runner: the next ones queue
        queued = [asyncio.create_task(batches.rows("s", one, many, _params(d))) for d in "bcd"]
        await asyncio.sleep(0)
        queued[1].cancel()
        assert (await first)[0][0] == "a"
        # Queued while the first held the only lane: the first's runner leaves them a runner of their own.
        answers = await asyncio.wait_for(asyncio.gather(queued[0], queued[2]), 10)
        assert [a[0][0] for a in answers] == ["b", "d"]
        assert queued[1].cancelled()
        assert batches.statements == 2, "the three queued ran as one batch, without the cancelled one"
    finally:
        await pool.close()


class _Hooked:
    """A pool whose every block runs ``after`` once the connection is handed back, before the caller goes on."""

    def __init__(self, pool: AsyncConnectionPool, after: Callable[[], Awaitable[None]]) -> None:
        self.pool, self.after = pool, after

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection() as conn:
            yield conn
        await self.after()


async def test_a_request_queued_while_the_last_runner_leaves_is_run(settings: Settings) -> None:
    """The runner finds only given-up requests, and a new one queues while it hands its connection back: the
    lanes are full then, so no runner starts for it; the leaving runner must start one."""
    pool = await _pool(settings, batch=0)
    late: list[asyncio.Task[Rows]] = []
    blocks = 0

    async def after() -> None:
        nonlocal blocks
        blocks += 1
        if blocks == 2:  # the block that found nothing to run: queue one now, while this runner still counts
            late.append(asyncio.create_task(batches.rows("s", one, many, _params("late"))))
            await asyncio.sleep(0)

    hooked = _Hooked(pool, after)  # held here: SeriesBatches holds its pool weakly
    batches = SeriesBatches(hooked, lanes=1, max_batch=8)  # type: ignore[arg-type]
    one = b"SELECT %(device)s::text, pg_sleep(0.05)"
    many = b"SELECT q.i, q.device, 0 FROM unnest(%(i)s::int4[], %(devices)s::text[]) q(i, device)"
    try:
        first = asyncio.create_task(batches.rows("s", one, many, _params("a")))
        await asyncio.sleep(0.01)
        given_up = asyncio.create_task(batches.rows("s", one, many, _params("b")))
        await asyncio.sleep(0)
        given_up.cancel()
        assert (await first)[0][0] == "a"
        await until(lambda: late, timeout=5, what="the late request queued")
        assert (await asyncio.wait_for(late[0], 5))[0][0] == "late"
    finally:
        await pool.close()


async def test_latest_value_fills_batched_equal_each_alone(settings: Settings) -> None:
    """The latest-value cache's fill (gateway/views/latest.py): the row and whether raw points are newer."""
    prefix = unique("fill") + "-"
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("SELECT telemetry.ensure_partition(%s::date)", (T0.date(),))
        conn.execute(
            """INSERT INTO telemetry.latest_values (device_id, metric_name, time, value_type, value_num, src_seq)
               SELECT %(p)s || d, 'm' || m, %(t0)s + (d + m) * interval '1 minute', 0, d * 10 + m, 5
               FROM generate_series(0, 5) d, generate_series(0, 2) m""",
            {"p": prefix, "t0": T0},
        )
        # Raw points newer than the row for some series only: their fill says "not caught up".
        conn.execute(
            """INSERT INTO telemetry.points (device_id, metric_name, time, value_type, value_num, src_seq)
               SELECT %(p)s || d, 'm' || m, %(t0)s + (d + m + 1) * interval '1 minute', 0, 1, 6
               FROM generate_series(0, 5) d, generate_series(0, 2) m WHERE (d + m) %% 3 = 0""",
            {"p": prefix, "t0": T0},
        )
    pool = await _pool(settings, batch=0)
    batches = SeriesBatches(pool, lanes=1, max_batch=32)
    keys = [{"device": f"{prefix}{d}", "metric": f"m{m}"} for d in range(7) for m in range(3)]  # device 6: no row
    try:
        async with pool.connection() as conn:
            want = [await (await conn.execute(latest._FILL_BYTES, k)).fetchall() for k in keys]
        asked = asyncio.gather(*(batches.rows("fill", latest._FILL_BYTES, latest._FILL_BATCH, k) for k in keys))
        got = await asyncio.wait_for(asked, 30)
        assert got == want
        assert sum(1 for rows in want if rows and rows[0][10] is False) == 6 and want[-1] == []  # both kinds seen
        assert batches.statements < len(keys)
    finally:
        await pool.close()


async def test_a_request_cancelled_while_running_its_batch_hands_the_others_on(settings: Settings) -> None:
    """The first request runs the batch in its own task; its client goes away mid-statement: the others of the
    batch are put back and answered by a runner of their own."""
    assert settings.database_url
    pool = make_pool(settings.database_url, min_size=1, max_size=1, timeout_s=10.0, autocommit=True)
    await pool.open(wait=True)
    batches = SeriesBatches(pool, lanes=1, max_batch=8)
    one = b"SELECT %(device)s::text, 0"
    many = (b"SELECT q.i, q.device, 0 FROM unnest(%(i)s::int4[], %(devices)s::text[]) q(i, device), "
            b"LATERAL (SELECT pg_sleep(0.3) WHERE %(ends)s::timestamptz[] IS NOT NULL) AS slow")  # fmt: skip
    try:
        async with pool.connection():  # the only connection: the first request waits for it, the others queue
            first = asyncio.create_task(batches.rows("s", one, many, _params("a")))
            await asyncio.sleep(0.01)
            others = [asyncio.create_task(batches.rows("s", one, many, _params(d))) for d in "bc"]
            await asyncio.sleep(0.01)
        await until(lambda: batches.statements == 1, timeout=5, what="the first running the batch of three")
        first.cancel()
        answers = await asyncio.wait_for(asyncio.gather(*others), 10)
        assert [a[0][0] for a in answers] == ["b", "c"]
        assert first.cancelled()
        assert batches.statements == 2, "the two went on in one more statement"
    finally:
        await pool.close()


async def test_the_batches_do_not_keep_their_pool_alive(settings: Settings) -> None:
    """The registry maps a pool to its batches weakly, and the batches hold the pool weakly: a pool let go is freed."""
    assert settings.database_url
    pool = make_pool(settings.database_url, min_size=1, max_size=1, autocommit=True)  # never opened
    batch_series_reads(pool, 32)
    assert batches_of(pool) is not None
    gone = weakref.ref(pool)
    del pool
    gc.collect()
    assert gone() is None
