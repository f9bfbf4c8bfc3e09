"""retry.while_transient: start-up requests ride out a server away for a moment, and nothing else."""

import asyncio
import time

import nats.errors
import pytest

from telemetry_core.retry import while_transient


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then answers ``"ok"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def test_a_request_timing_out_while_a_leader_is_elected_is_asked_again() -> None:
    call = Flaky(2, nats.errors.TimeoutError())
    assert asyncio.run(while_transient(call, max_seconds=10)) == "ok"
    assert call.calls == 3


def test_a_failure_that_is_not_transient_is_raised_at_once() -> None:
    call = Flaky(5, ValueError("bad config"))
    with pytest.raises(ValueError, match="bad config"):
        asyncio.run(while_transient(call, max_seconds=10))
    assert call.calls == 1


def test_a_server_away_for_longer_than_the_bound_is_raised() -> None:
    call = Flaky(10**6, nats.errors.NoRespondersError())
    started = time.monotonic()
    with pytest.raises(nats.errors.NoRespondersError):
        asyncio.run(while_transient(call, max_seconds=0.5))
    assert call.calls > 1 and time.monotonic() - started < 5
