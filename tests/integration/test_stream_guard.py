"""The stream guard against a real stream and checkpoint table: each way a checkpoint stops being a position.

Each test uses a stream and a checkpoint name of its own, so the shared servers' streams are never touched.
"""

from datetime import UTC, datetime

import pytest
import structlog
from nats.aio.client import Client
from nats.js.api import StreamConfig
from psycopg_pool import AsyncConnectionPool

from telemetry_core.checkpoints import (
    Position,
    advance_checkpoint,
    delete_checkpoint,
    halted_checkpoints,
    read_position,
)
from telemetry_core.stream_guard import StreamChanged, StreamGuard, stream_problem
from tests.support.ids import unique

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("position", "created", "last_seq", "expected"),
    [
        (Position(0, T0), T1, 0, None),  # nothing applied: any stream will do
        (Position(5, T0), T0, 5, None),
        (Position(5, T0), T0, 9, None),
        (Position(5, None), T1, 9, None),  # a checkpoint from before 0012 is adopted
        (Position(5, T0), T1, 9, "created again"),
        (Position(5, T0), T0, 4, "ends at sequence 4, below checkpoint 5"),
        (Position(5, None), T1, 4, "ends at sequence 4, below checkpoint 5"),
    ],
)
def test_stream_problem(position: Position, created: datetime, last_seq: int, expected: str | None) -> None:
    problem = stream_problem("S", position, created, last_seq)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


async def make_stream(nc: Client, name: str, messages: int) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
    for i in range(messages):
        await js.publish(f"{name}.x", str(i).encode())


async def forget(nc: Client, pool: AsyncConnectionPool, consumer: str, stream: str) -> None:
    """Remove the test's stream and checkpoint: a halted row would make the shared stack's health unhealthy."""
    await nc.jetstream().delete_stream(stream)
    async with pool.connection() as conn:
        await delete_checkpoint(conn, consumer, stream)


def guard_for(nc: Client, pool: AsyncConnectionPool, consumer: str, stream: str) -> StreamGuard:
    return StreamGuard(nc, nc.jetstream(), pool, consumer=consumer, stream=stream, fix="run the fix",
                       log=structlog.get_logger())  # fmt: skip


async def test_first_check_records_the_stream_and_a_healthy_one_passes(nc: Client, pool: AsyncConnectionPool) -> None:
    stream, consumer = unique("GUARD").upper(), unique("proj")
    await make_stream(nc, stream, 3)
    guard = guard_for(nc, pool, consumer, stream)
    await guard.check()
    created = (await nc.jetstream().stream_info(stream)).created
    async with pool.connection() as conn:
        assert await read_position(conn, consumer, stream) == Position(0, created, None)
        await advance_checkpoint(conn, consumer, stream, 3)
    await guard.check()
    await guard.before_skip(3)  # a redelivery of 1..3 is skipped rightly
    await forget(nc, pool, consumer, stream)


async def test_recreated_stream_halts_and_the_halt_holds(nc: Client, pool: AsyncConnectionPool) -> None:
    stream, consumer = unique("GUARD").upper(), unique("proj")
    js = nc.jetstream()
    await make_stream(nc, stream, 3)
    guard = guard_for(nc, pool, consumer, stream)
    await guard.check()
    async with pool.connection() as conn:
        await advance_checkpoint(conn, consumer, stream, 3)
    await js.delete_stream(stream)
    await make_stream(nc, stream, 5)  # grew past the checkpoint again: only the creation time tells

    with pytest.raises(StreamChanged, match="run the fix"):
        await guard.before_skip(3)  # the handler's path: raises, records nothing (the runtime does)
    with pytest.raises(StreamChanged, match="created again"):
        await guard.check()
    async with pool.connection() as conn:
        halted = {name: reason for name, _, _, reason in await halted_checkpoints(conn)}
    assert "created again" in halted[consumer]
    with pytest.raises(StreamChanged):  # a new guard (a restarted worker) is stopped too
        await guard_for(nc, pool, consumer, stream).check()
    await forget(nc, pool, consumer, stream)


async def test_lost_tail_halts_even_once_the_stream_grows_back(nc: Client, pool: AsyncConnectionPool) -> None:
    stream, consumer = unique("GUARD").upper(), unique("proj")
    await make_stream(nc, stream, 2)
    guard = guard_for(nc, pool, consumer, stream)
    await guard.check()
    async with pool.connection() as conn:
        await advance_checkpoint(conn, consumer, stream, 4)  # as if 3 and 4 had been applied, then lost
    with pytest.raises(StreamChanged, match="below checkpoint 4"):
        await guard.check()
    for i in range(5):
        await nc.jetstream().publish(f"{stream}.x", str(i).encode())
    with pytest.raises(StreamChanged, match="below checkpoint 4"):
        await guard.check()  # the recorded halt, not today's comparison, decides
    await forget(nc, pool, consumer, stream)
