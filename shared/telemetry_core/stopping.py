"""Waits that end on the stop signal: a worker must exit within seconds of SIGTERM whatever its servers do."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

T = TypeVar("T")


class Stopped(Exception):
    """The stop signal came while waiting; the caller unwinds without finishing."""


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; return whether it was set."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _abandon(task: "asyncio.Future[T]", within_s: float) -> None:
    """Cancel ``task`` and give it ``within_s`` to unwind; a task that will not is left behind, not waited on."""
    task.cancel()
    await asyncio.wait({task}, timeout=within_s)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


async def until_stopped(stop: asyncio.Event, aw: Awaitable[T], *, grace_s: float = 0.0) -> T:
    """Await ``aw`` unless ``stop`` is set first; then allow ``grace_s`` more, cancel it and raise Stopped.

    ``grace_s`` lets work already under way (a commit about to finish) complete instead of being redone.
    """
    if stop.is_set():
        if asyncio.iscoroutine(aw):
            aw.close()  # never started: nothing to cancel
        raise Stopped
    task = asyncio.ensure_future(aw)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and grace_s > 0:
            await asyncio.wait({task}, timeout=grace_s)
        if task.done():
            return task.result()
        await _abandon(task, 1.0)
        raise Stopped
    finally:
        stopping.cancel()
        if not task.done():  # we were cancelled ourselves: take the work down with us
            await _abandon(task, 1.0)


async def bounded(close: Callable[[], Awaitable[object]], timeout_s: float, what: str,
                  log: structlog.stdlib.BoundLogger) -> None:  # fmt: skip
    """Run one shutdown step for at most ``timeout_s``; log and carry on when it fails or hangs.

    Unlike ``asyncio.wait_for`` this does not wait for a cancelled step to unwind (a step stuck on a dead
    server may not), so the bound holds.
    """
    task = asyncio.ensure_future(close())
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("shutdown_step_timed_out", step=what, timeout_s=timeout_s)
        await _abandon(task, 0.2)
    elif not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("shutdown_step_failed", step=what, error=repr(exc))
