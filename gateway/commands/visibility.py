"""Read-your-writes: wait until a published event is visible everywhere a client may look next.

Every condition (a read model's checkpoint, the gateway's definitions cache, the live alert engines)
is awaited concurrently under ONE deadline, so a write is held for at most ``within_s`` in all. The
event is durable either way: a condition still unmet at the deadline is logged, not an error.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger()

# Resolves once stream sequence ``seq`` is visible to one reader; True when it is (False: gave up).
Condition = Callable[[int], Awaitable[bool]]
# How often a polled condition looks again: quickly at first, then every 50 ms.
FIRST_POLL_S = 0.002
MAX_POLL_S = 0.05


def polled(reached: Callable[[int], Awaitable[bool]], max_poll_s: float = MAX_POLL_S) -> Condition:
    """A condition from a one-shot check, asked again with a growing delay (up to ``max_poll_s``) until it holds."""

    async def wait(seq: int) -> bool:
        delay = min(FIRST_POLL_S, max_poll_s)
        while not await reached(seq):
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_poll_s)
        return True

    return wait


async def wait_visible(seq: int, conditions: Mapping[str, Condition], within_s: float) -> list[str]:
    """Wait for every condition to see ``seq``, all at once, for at most ``within_s``; names those that did not.

    An error in a condition (e.g. PostgreSQL down) is raised at once, the other waits cancelled.
    """
    tasks = {name: asyncio.ensure_future(condition(seq)) for name, condition in conditions.items()}
    if not tasks:
        return []
    try:
        _, pending = await asyncio.wait(tasks.values(), timeout=within_s, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    late = [name for name, task in tasks.items() if task in pending or not task.result()]
    if late:
        # The event is durable; a reader is only slow (or down). Say so in the log.
        log.warning("write_not_yet_visible", seq=seq, waiting_for=late)
    return late


@dataclass(frozen=True)
class Visibility:
    """The readers one aggregate's writes must reach before a command answers."""

    conditions: Mapping[str, Condition]
    within_s: float

    async def wait(self, seq: int) -> list[str]:
        """``wait_visible`` over these conditions."""
        return await wait_visible(seq, self.conditions, self.within_s)
