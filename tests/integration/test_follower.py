"""Follower: a failure while following is logged, surfaced (healthy=False) and healed by resubscribing."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from telemetry_core.follower import Follower
from tests.integration.runtime_support import until
from tests.support.ids import unique


@asynccontextmanager
async def stream(nc: Client) -> AsyncIterator[tuple[JetStreamContext, str, str]]:
    js, uid = nc.jetstream(), unique("fol")
    name, prefix = f"FOL_{uid}", f"fol.{uid}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"], storage=StorageType.FILE))
    try:
        yield js, name, prefix
    finally:
        await js.delete_stream(name)


class Cache:
    """Applies events into a list; raises on the values it is told to, once each."""

    def __init__(self, fail_once: set[str]) -> None:
        self.fail_once = fail_once
        self.values: list[str] = []

    def apply(self, value: Any, seq: int) -> None:
        if value in self.fail_once:
            self.fail_once.discard(value)
            raise RuntimeError(f"cannot apply {value}")
        self.values.append(value)


async def test_an_apply_that_raises_is_retried_from_the_same_message_and_surfaced(nc: Client) -> None:
    async with stream(nc) as (js, name, prefix):
        for v in ("a", "b", "c"):
            await js.publish(f"{prefix}.x", v.encode())
        cache = Cache(fail_once={"b"})
        follower = Follower(js, name, f"{prefix}.>", bytes.decode, cache.apply, structlog.get_logger())
        with structlog.testing.capture_logs() as logs:
            await follower.start()
            # The task did not die: it resubscribed from "b" and went on.
            await until(lambda: cache.values == ["a", "b", "c"], what="every event applied once, in order")
        try:
            assert (follower.restarts, follower.last_seq, follower.healthy) == (1, 3, True)
            failed = [e for e in logs if e["event"] == "follower_failed_resubscribing"]
            assert len(failed) == 1 and "cannot apply b" in failed[0]["error"] and failed[0]["resume_from"] == 2
            assert any(e["event"] == "follower_recovered" for e in logs)
            await js.publish(f"{prefix}.x", b"d")
            await until(lambda: cache.values[-1:] == ["d"], what="still following")
        finally:
            await follower.stop()


async def test_a_failure_that_persists_shows_as_unhealthy_until_it_clears(nc: Client) -> None:
    async with stream(nc) as (js, name, prefix):
        await js.publish(f"{prefix}.x", b"a")
        broken = {"on": True}

        def apply(value: Any, seq: int) -> None:
            if broken["on"]:
                raise RuntimeError("cache backend refused")

        follower = Follower(js, name, f"{prefix}.>", bytes.decode, apply, structlog.get_logger())
        await follower.start()
        try:
            await until(lambda: follower.restarts >= 2, what="two restarts")
            assert not follower.healthy
            assert follower.last_error is not None and "cache backend refused" in follower.last_error
            assert follower.last_seq == 0  # never skipped past the message it could not apply
            broken["on"] = False
            await until(lambda: follower.healthy and follower.last_seq == 1, timeout=10, what="healed")
        finally:
            await follower.stop()


async def test_a_subscription_that_ends_under_the_follower_is_resubscribed(nc: Client) -> None:
    async with stream(nc) as (js, name, prefix):
        await js.publish(f"{prefix}.x", b"a")
        cache = Cache(fail_once=set())
        follower = Follower(js, name, f"{prefix}.>", bytes.decode, cache.apply, structlog.get_logger())
        await follower.start()
        try:
            await until(lambda: cache.values == ["a"], what="first event")
            await follower._sub.unsubscribe()  # the subscription goes away (e.g. the connection was reset)
            await js.publish(f"{prefix}.x", b"b")
            await until(lambda: cache.values == ["a", "b"], what="following again, without replaying 'a'")
            assert follower.restarts == 1
        finally:
            await follower.stop()


async def test_a_first_subscription_that_fails_is_retried_until_it_works(nc: Client) -> None:
    """The stream is not there when the follower starts (as JetStream's API timing out during a cluster's leader
    election): start() returns, the follower is unhealthy, and it follows once the stream exists."""
    js, uid = nc.jetstream(), unique("fol")
    name, prefix = f"FOL_{uid}", f"fol.{uid}"
    cache = Cache(fail_once=set())
    follower = Follower(js, name, f"{prefix}.>", bytes.decode, cache.apply, structlog.get_logger())
    with structlog.testing.capture_logs() as logs:
        await follower.start()
    try:
        assert not follower.healthy and follower.last_error is not None
        assert any(e["event"] == "follower_subscribe_failed_retrying" for e in logs)
        await until(lambda: follower.restarts >= 1, what="a retry")
        await js.add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"], storage=StorageType.FILE))
        await js.publish(f"{prefix}.x", b"a")
        await follower.wait_caught_up(15.0)
        await until(lambda: cache.values == ["a"] and follower.healthy, timeout=15, what="following once it exists")
    finally:
        await follower.stop()
        await js.delete_stream(name)


@asynccontextmanager
async def following(js: JetStreamContext, name: str, subject: str) -> AsyncIterator[tuple[Follower, Cache]]:
    """A started follower of ``subject`` applying into a fresh Cache; stopped on the way out."""
    cache = Cache(fail_once=set())
    follower = Follower(js, name, subject, bytes.decode, cache.apply, structlog.get_logger())
    try:
        await follower.start()
        yield follower, cache
    finally:
        await follower.stop()


async def each_fresh_follower_has(
    js: JetStreamContext, name: str, subject: str, want: list[str], followers: int
) -> None:
    """Start ``followers`` new followers one after another; each must hold ``want`` once it says it caught up."""
    for attempt in range(followers):
        async with following(js, name, subject) as (follower, cache):
            await follower.wait_caught_up(10.0)
            assert cache.values == want, f"follower {attempt}: caught up with {cache.values}"


async def test_caught_up_means_every_message_there_at_start_is_applied(nc: Client) -> None:
    # The server can push a small backlog into the client's buffer before the follower asks for its consumer
    # info: num_pending is 0 then, with nothing applied yet. Caught up must still wait for the last message
    # delivered (seen: a user deletion not yet known when the deleted-users feed said it had caught up).
    async with stream(nc) as (js, name, prefix):
        for i in range(3):
            await js.publish(f"{prefix}.x", str(i).encode())
        await each_fresh_follower_has(js, name, f"{prefix}.>", ["0", "1", "2"], followers=20)


async def test_a_filter_that_matches_nothing_yet_is_caught_up_at_once(nc: Client) -> None:
    # Other subjects of the stream hold messages, the followed one none (a deployment without API keys yet):
    # nothing will be delivered, so nothing may be waited for.
    async with stream(nc) as (js, name, prefix):
        for i in range(5):
            await js.publish(f"{prefix}.other", str(i).encode())
        async with following(js, name, f"{prefix}.mine") as (follower, cache):
            await follower.wait_caught_up(2.0)
            await js.publish(f"{prefix}.mine", b"m")
            await until(lambda: cache.values == ["m"], what="the first message of the subject applied")


async def test_the_last_message_of_the_filter_before_others_ends_the_catch_up(nc: Client) -> None:
    # The followed subject's backlog is followed by other subjects' messages: the consumer's stream position
    # moves past them, but caught up is reached when the followed messages are applied.
    async with stream(nc) as (js, name, prefix):
        for i in range(3):
            await js.publish(f"{prefix}.mine", str(i).encode())
        for i in range(50):
            await js.publish(f"{prefix}.other", str(i).encode())
        await each_fresh_follower_has(js, name, f"{prefix}.mine", ["0", "1", "2"], followers=10)


async def test_a_long_catch_up_that_keeps_applying_is_waited_for_and_reported(nc: Client) -> None:
    """wait_caught_up's timeout bounds a stall, not the catch-up: an alert engine whose rules take longer than it
    to replay failed every start (and each restart replayed them from the first again)."""
    async with stream(nc) as (js, name, prefix):
        for i in range(60):
            await js.publish(f"{prefix}.x", str(i).encode())
        cache = Cache(fail_once=set())

        def slow_apply(value: Any, seq: int) -> None:
            time.sleep(0.01)  # 60 messages: ~0.6 s, several times the timeout below
            cache.apply(value, seq)

        follower = Follower(js, name, f"{prefix}.>", bytes.decode, slow_apply, structlog.get_logger())
        with structlog.testing.capture_logs() as logs:
            await follower.start()
            try:
                await follower.wait_caught_up(0.15)
                assert cache.values == [str(i) for i in range(60)]
                progress = [e for e in logs if e["event"] == "follower_catching_up"]
                assert progress and all(e["applied"] > 0 for e in progress)
            finally:
                await follower.stop()


async def test_a_follower_that_applies_nothing_times_out(nc: Client) -> None:
    """No stream, no progress: the wait ends after the timeout instead of hanging the process's start."""
    js, uid = nc.jetstream(), unique("fol")
    follower = Follower(js, f"FOL_{uid}", f"fol.{uid}.>", bytes.decode, Cache(set()).apply, structlog.get_logger())
    await follower.start()
    try:
        with pytest.raises(TimeoutError):
            await follower.wait_caught_up(0.5)
    finally:
        await follower.stop()


class ReplicaBehindFirst:
    """A JetStream context whose first follower subscription sees the stream as a replica still catching up does.

    In a cluster the follower's ordered consumer (R1) is placed on any replica of the stream. Made on a node
    restarted a moment before, it answers num_pending 0 with nothing delivered while the stream holds the message,
    and delivers it 0.02-5 s later, once that replica has caught up. Seen with the shape of
    tests/e2e/test_cluster_faults.py (3 nodes, R3, the POINTS leader SIGKILLed under load and restarted): followers
    started within 2.5 s of the restart said they had caught up with nothing applied in 27 of 625 starts. An alert
    engine taking over then had no rules, skimmed its whole backlog as unwatched, and raised no alert.
    ``sees`` is what that replica holds: None (nothing), or a subject matching only the first of the messages.
    """

    def __init__(self, js: JetStreamContext, sees: str | None) -> None:
        self._js, self._sees, self.subscriptions = js, sees, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def subscribe(self, subject: str, **kwargs: Any) -> Any:
        self.subscriptions += 1
        if self.subscriptions == 1:
            if self._sees is None:
                kwargs["config"] = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)  # num_pending 0, nothing delivered
            else:
                subject = self._sees
        return await self._js.subscribe(subject, **kwargs)


@pytest.mark.parametrize("sees", ["nothing", "the first message only"])
async def test_a_consumer_on_a_replica_that_is_behind_is_not_caught_up(nc: Client, sees: str) -> None:
    async with stream(nc) as (js, name, prefix):
        for v in ("a", "b", "c"):
            await js.publish(f"{prefix}.mine.{v}", v.encode())
        behind = ReplicaBehindFirst(js, None if sees == "nothing" else f"{prefix}.mine.a")
        cache = Cache(fail_once=set())
        follower = Follower(behind, name, f"{prefix}.mine.>", bytes.decode, cache.apply, structlog.get_logger())  # type: ignore[arg-type]
        with structlog.testing.capture_logs() as logs:
            await follower.start()
            try:
                await follower.wait_caught_up(10.0)
                assert cache.values == ["a", "b", "c"], f"caught up with {cache.values}"
                assert behind.subscriptions >= 2  # the consumer that was behind was made again
                assert any("ReplicaBehind" in (e.get("error") or "") for e in logs)
            finally:
                await follower.stop()
