"""Shutdown steps with a deadline each: one stuck step (a task that never ends) cannot hold the gateway forever.

Seen once in the suite: the lifespan's shutdown waited for minutes with the event loop idle and PostgreSQL
idle, so one of the ``stop()`` awaits never completed (Python 3.11's ``wait_for`` can swallow a cancellation
that races with its inner future, and a loop cancelled that way keeps running). Each step now gets
``timeout_s``; a step that overruns is abandoned with a warning naming it, and the next one runs.
"""

import asyncio
from collections.abc import Awaitable, Callable

import structlog

STEP_TIMEOUT_S = 10.0
log = structlog.get_logger()


Step = tuple[str, Callable[[], Awaitable[object]]]


async def run_steps(steps: list[Step], timeout_s: float = STEP_TIMEOUT_S) -> list[str]:
    """Run each ``(name, step)`` in order within ``timeout_s``; return the names of the steps that overran or failed."""
    failed: list[str] = []
    for name, step in steps:
        try:
            await asyncio.wait_for(step(), timeout_s)
        except TimeoutError:
            log.warning("shutdown_step_timed_out", step=name, timeout_s=timeout_s)
            failed.append(name)
        except Exception as exc:  # one failing step must not skip the others (pools and connections still close)
            log.warning("shutdown_step_failed", step=name, error=repr(exc))
            failed.append(name)
    return failed
