"""ProjectionRunner on the ordered consumer runtime, against real PostgreSQL: the in-order retry regression."""

import asyncio
import time
from dataclasses import replace
from typing import Any

import msgspec
import psycopg
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool

from projection_worker.runner import ProjectionRunner
from telemetry_core.checkpoints import delete_checkpoint, read_checkpoint
from telemetry_core.consumer_runtime import Policy, Rejected
from telemetry_core.embedded import free_port
from telemetry_core.pg_pool import make_pool
from telemetry_core.stream_guard import StreamChanged, StreamGuard
from telemetry_core.topology import ConsumerSpec
from tests.integration.runtime_support import LOG, Lane, lane, running, until

_TABLE = """
CREATE TABLE IF NOT EXISTS public.test_projection_applied (
    id bigserial PRIMARY KEY, projection text NOT NULL, value text NOT NULL)
"""
FAST = Policy(batch=10, ordered=True, attempts=3, retry_base_s=0.05, retry_max_s=0.2)


class FlakyProjection:
    """Appends each message to a table; fails (inside the transaction) the first ``fails[value]`` times."""

    TABLES = ("public.test_projection_applied",)

    def __init__(self, ln: Lane, fails: dict[str, int]) -> None:
        self.NAME = ln.worker
        self.SPEC: ConsumerSpec = ln.spec
        self.fails = fails

    def decode(self, data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise msgspec.DecodeError(str(exc)) from exc

    async def apply(self, cur: AsyncCursor[Any], messages: list[Any]) -> None:
        for value in messages:
            await cur.execute(
                "INSERT INTO public.test_projection_applied (projection, value) VALUES (%s, %s)", (self.NAME, value)
            )
            if self.fails.get(value, 0) > 0:
                self.fails[value] -= 1
                raise psycopg.errors.CheckViolation(f"refusing {value} this time")


async def applied(pool: AsyncConnectionPool, name: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT value FROM public.test_projection_applied WHERE projection = %s ORDER BY id", (name,)
        )
        return [r[0] for r in await cur.fetchall()]


async def checkpoint(pool: AsyncConnectionPool, ln: Lane) -> int:
    async with pool.connection() as conn, conn.transaction():
        return await read_checkpoint(conn, ln.worker, ln.stream)


@pytest.mark.parametrize("batch", [1, 10])
async def test_a_failed_message_is_retried_before_any_later_one_commits(
    nc: Client, pool: AsyncConnectionPool, batch: int
) -> None:
    await _create_table(pool)
    async with lane(nc) as ln:
        seqs = await ln.publish(b"a", b"b", b"c")
        # One message per fetch is where an unordered loop would nak "b" and commit "c" past it.
        projection, stop = FlakyProjection(ln, {"b": 1}), asyncio.Event()
        runner = ProjectionRunner(pool, projection)
        async with running(ln.runtime(runner, stop, replace(FAST, batch=batch)), stop):
            await until(lambda: _at(pool, ln, seqs[-1]), what="checkpoint at the last message")
        # The failed attempt rolled back; "b" committed before "c"; nothing was skipped or dead-lettered.
        assert await applied(pool, ln.worker) == ["a", "b", "c"]
        assert (runner.applied, projection.fails) == (3, {"b": 0})
        assert await ln.dead_letters() == []


async def _create_table(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(_TABLE)
        await conn.commit()


async def _at(pool: AsyncConnectionPool, ln: Lane, seq: int) -> bool:
    return await checkpoint(pool, ln) >= seq


async def test_a_message_that_keeps_failing_is_dead_lettered_then_the_next_applies(
    nc: Client, pool: AsyncConnectionPool
) -> None:
    await _create_table(pool)
    async with lane(nc) as ln:
        seqs = await ln.publish(b"a", b"b", b"c", b"not utf-8 \xff")
        projection, stop = FlakyProjection(ln, {"b": 1000}), asyncio.Event()
        async with running(ln.runtime(ProjectionRunner(pool, projection), stop, FAST), stop):
            await until(lambda: _at(pool, ln, seqs[2]), timeout=15, what="checkpoint past c")
            letters = await until(lambda: _n_letters(ln, 2), what="two dead letters")
        assert await applied(pool, ln.worker) == ["a", "c"]
        reasons = {d.stream_seq: d.reason for d in letters}
        assert "refusing b this time" in reasons[seqs[1]] and "failed 3 attempts" in reasons[seqs[1]]
        assert reasons[seqs[3]].startswith(f"undecodable for projection {ln.worker}")


async def _n_letters(ln: Lane, n: int) -> list[Any] | None:
    letters = await ln.dead_letters()
    return letters if len(letters) == n else None


async def test_stop_ends_the_in_order_retry_while_postgres_is_unreachable(
    nc: Client, pool: AsyncConnectionPool
) -> None:
    await _create_table(pool)
    dead = make_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/telemetry", timeout_s=0.3)
    await dead.open(wait=False)
    try:
        async with lane(nc) as ln:
            await ln.publish(b"a")
            projection, stop, calls = FlakyProjection(ln, {}), asyncio.Event(), []
            runner = ProjectionRunner(dead, projection)

            async def counting(msgs: list[Msg]) -> list[Rejected]:
                calls.append(msgs[0].metadata.num_delivered)
                return await runner(msgs)

            policy = Policy(batch=10, ordered=True, attempts=1, max_deliveries=1, retry_base_s=0.05, retry_max_s=0.3)
            task = asyncio.create_task(ln.runtime(counting, stop, policy).run())
            # Failed checkouts are transient: retried in place (one delivery), never dead-lettered.
            await until(lambda: len(calls) >= 4, what="several attempts")
            started = time.monotonic()
            stop.set()
            await asyncio.wait_for(task, 5)
            assert time.monotonic() - started < 2.0
            assert set(calls) == {1}
            assert await ln.dead_letters() == []
            # Released with a nak: a runtime with PostgreSQL back applies it at once (ack_wait is 30 s).
            stop_b = asyncio.Event()
            async with running(ln.runtime(ProjectionRunner(pool, projection), stop_b, FAST), stop_b):
                await until(lambda: applied(pool, ln.worker), timeout=5, what="applied after the nak")
            assert await applied(pool, ln.worker) == ["a"]
    finally:
        await dead.close(timeout=1)


async def test_a_runner_never_skips_messages_of_a_stream_created_again(nc: Client, pool: AsyncConnectionPool) -> None:
    """The handler's own guard: before it skips a message at or below its checkpoint, the stream must be the same.

    The runtime's checks (start-up, reconnect, failed fetch, every 30 s) are left out here: only the runner stands
    between a recreated stream and a silent skip.
    """
    await _create_table(pool)
    async with lane(nc) as ln:
        projection = FlakyProjection(ln, {})
        guard = StreamGuard(nc, ln.js, pool, consumer=ln.worker, stream=ln.stream, fix="replay it", log=LOG,
                            recheck_s=3600)  # fmt: skip
        await guard.check()  # records the stream, as the runtime does at start-up
        stop = asyncio.Event()
        async with running(ln.runtime(ProjectionRunner(pool, projection, guard), stop, FAST), stop):
            await ln.publish(b"a", b"b", b"c")
            await until(lambda: checkpoint(pool, ln), what="checkpoint 3")
            await until(lambda: _at(pool, ln, 3))
        # Behind its back: the stream and consumer are created again, and sequence 1 is a new message.
        await ln.js.delete_stream(ln.stream)
        await ln.js.add_stream(StreamConfig(name=ln.stream, subjects=[f"{ln.prefix}.>"], storage=StorageType.FILE))
        await ln.js.add_consumer(ln.stream, ln.spec.config())
        await ln.publish(b"new")
        sub = await ln.js.pull_subscribe_bind(ln.spec.durable, ln.stream)
        msgs = await sub.fetch(1, timeout=5)
        with pytest.raises(StreamChanged, match="created again"):
            await ProjectionRunner(pool, projection, guard)(msgs)
        assert await applied(pool, ln.worker) == ["a", "b", "c"]
        # Without the guard the same message is skipped silently: the hazard this guards against.
        assert await ProjectionRunner(pool, projection)(msgs) == []
        assert await applied(pool, ln.worker) == ["a", "b", "c"]
        await sub.unsubscribe()
        async with pool.connection() as conn:
            await delete_checkpoint(conn, ln.worker, ln.stream)


async def _at(pool: AsyncConnectionPool, ln: Lane, seq: int) -> bool:
    return await checkpoint(pool, ln) >= seq
