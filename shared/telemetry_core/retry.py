"""Named tenacity policies, reused wherever we connect or ask a server at start-up."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from telemetry_core.errors import is_transient

T = TypeVar("T")
_log = structlog.get_logger()


def connect_retrying(max_seconds: float = 30.0) -> AsyncRetrying:
    """Retry a start-up connection with backoff for up to ``max_seconds``, then give up loudly."""
    return AsyncRetrying(
        stop=stop_after_delay(max_seconds),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception_type(Exception),
        reraise=True,
    )


def _say_retrying(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    _log.warning("start_up_request_retrying", attempt=state.attempt_number, error=repr(error))


async def while_transient(call: Callable[[], Awaitable[T]], max_seconds: float = 30.0) -> T:
    """``await call()``, again with backoff while it fails transiently (telemetry_core.errors.is_transient).

    For the requests a worker makes before it runs: a JetStream API request times out while a NATS cluster
    elects a stream's new leader (a node lost), and a worker that exits on that leaves its partition to a
    standby that may be gone too. Any other failure, or a transient one lasting ``max_seconds``, is raised.
    """
    retrying = AsyncRetrying(
        stop=stop_after_delay(max_seconds),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        retry=retry_if_exception(is_transient),
        before_sleep=_say_retrying,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: AsyncRetrying reraises")
