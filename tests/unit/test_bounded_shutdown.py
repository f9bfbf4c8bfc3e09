"""gateway.bounded_shutdown: a stuck or failing shutdown step is abandoned, and the steps after it still run."""

import asyncio

from gateway.bounded_shutdown import run_steps


async def test_a_stuck_step_is_abandoned_and_the_rest_run() -> None:
    ran: list[str] = []
    never = asyncio.Event()

    async def stuck() -> None:
        await never.wait()  # a stop() whose task never ends

    async def fails() -> None:
        raise RuntimeError("server gone")

    async def records(name: str) -> None:
        ran.append(name)

    failed = await asyncio.wait_for(
        run_steps([("first", lambda: records("first")), ("stuck", stuck), ("fails", fails),
                   ("pool", lambda: records("pool"))], timeout_s=0.2),
        timeout=5,
    )  # fmt: skip
    assert failed == ["stuck", "fails"]
    assert ran == ["first", "pool"]
