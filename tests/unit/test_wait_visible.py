"""wait_visible: every condition awaited at once, under one deadline; late ones named, errors raised."""

import asyncio
import time

import pytest

from gateway.commands.visibility import Condition, polled, wait_visible


def never() -> Condition:
    async def wait(seq: int) -> bool:
        await asyncio.Event().wait()
        return True

    return wait


def after(delay_s: float) -> Condition:
    async def wait(seq: int) -> bool:
        await asyncio.sleep(delay_s)
        return True

    return wait


async def test_conditions_are_awaited_together_under_one_deadline() -> None:
    start = time.monotonic()
    late = await wait_visible(7, {"read_model": never(), "cache": never(), "engines": never()}, within_s=0.4)
    elapsed = time.monotonic() - start
    assert late == ["read_model", "cache", "engines"]
    # One after the other would take three deadlines; together it is one.
    assert elapsed < 2 * 0.4


async def test_conditions_met_in_time_are_not_late_and_the_wait_ends_with_the_last() -> None:
    start = time.monotonic()
    late = await wait_visible(7, {"a": after(0.05), "b": after(0.1)}, within_s=5.0)
    assert late == []
    assert time.monotonic() - start < 2.5  # did not sit out the deadline


async def test_only_the_unmet_condition_is_named() -> None:
    assert await wait_visible(7, {"fast": after(0.0), "stuck": never()}, within_s=0.2) == ["stuck"]


async def test_a_condition_that_gives_up_is_late() -> None:
    async def gives_up(seq: int) -> bool:
        return False

    assert await wait_visible(7, {"cache": gives_up}, within_s=1.0) == ["cache"]


async def test_an_error_is_raised_and_the_other_waits_are_cancelled() -> None:
    cancelled = asyncio.Event()

    async def hangs(seq: int) -> bool:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    async def fails(seq: int) -> bool:
        raise ConnectionError("PostgreSQL is down")

    start = time.monotonic()
    with pytest.raises(ConnectionError):
        await wait_visible(7, {"engines": hangs, "read_model": fails}, within_s=5.0)
    assert time.monotonic() - start < 2.5  # at once, not at the deadline
    assert cancelled.is_set()


async def test_polled_asks_again_until_the_sequence_is_reached() -> None:
    applied = {"seq": 0}
    asked: list[int] = []

    async def reached(seq: int) -> bool:
        asked.append(applied["seq"])
        applied["seq"] += 1
        return applied["seq"] >= seq

    assert await wait_visible(5, {"read_model": polled(reached)}, within_s=5.0) == []
    assert asked == [0, 1, 2, 3, 4]
