"""The consumer runtime against real JetStream: ordering, retries, dead letters, redelivery, stopping."""

import asyncio
import itertools
import time

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from telemetry_core.consumer_runtime import Policy, Rejected
from telemetry_core.errors import PermanentError, TransientError
from tests.integration.runtime_support import Lane, lane, running, until

FAST = {"retry_base_s": 0.05, "retry_max_s": 0.2, "nak_base_s": 0.05, "nak_max_s": 0.2}


class Recorder:
    """A handler that 'commits' a whole batch or nothing, and fails as told."""

    def __init__(self, once: dict[bytes, list[Exception]] | None = None,
                 always: dict[bytes, Exception] | None = None) -> None:  # fmt: skip
        self.once = once or {}  # payload → exceptions, one raised per call that contains the payload
        self.always = always or {}  # payload → exception raised on every call that contains it
        self.applied: list[bytes] = []
        self.calls: list[tuple[float, list[bytes], list[int]]] = []

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        self.calls.append((time.monotonic(), [m.data for m in msgs], [m.metadata.num_delivered for m in msgs]))
        for m in msgs:
            if m.data in self.always:
                raise self.always[m.data]
            if self.once.get(m.data):
                raise self.once[m.data].pop(0)
        self.applied.extend(m.data for m in msgs)
        return []

    def calls_with(self, payload: bytes) -> list[list[bytes]]:
        return [batch for _, batch, _ in self.calls if payload in batch]


PAYLOADS = [b"1", b"2", b"3", b"4", b"5"]


@pytest.mark.parametrize("batch", [1, 10])
async def test_a_handler_that_fails_once_is_retried_in_order_before_anything_later(nc: Client, batch: int) -> None:
    async with lane(nc) as ln:
        await ln.publish(*PAYLOADS)
        handler, stop = Recorder(once={b"2": [RuntimeError("db hiccup")]}), asyncio.Event()
        async with running(ln.runtime(handler, stop, Policy(batch=batch, ordered=True, **FAST)), stop):
            await until(lambda: len(handler.applied) == 5, what="all applied")
        assert handler.applied == PAYLOADS  # 2 before 3: nothing later was applied while 2 waited
        assert len(handler.calls_with(b"2")) == 2
        assert await ln.dead_letters() == []


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_handler_that_always_fails_is_dead_lettered_with_its_reason(nc: Client, ordered: bool) -> None:
    async with lane(nc) as ln:
        seqs = await ln.publish(*PAYLOADS)
        handler, stop = Recorder(always={b"3": ValueError("cannot apply 3")}), asyncio.Event()
        policy = Policy(batch=10, ordered=ordered, attempts=3, max_deliveries=3, isolate_after=2, **FAST)
        async with running(ln.runtime(handler, stop, policy), stop):
            letters = await until(ln.dead_letters, timeout=15, what="a dead letter")
            await until(lambda: len(handler.applied) == 4, what="the others applied")
        (letter,) = letters
        assert (letter.stream_seq, letter.payload, letter.worker) == (seqs[2], "3", ln.worker)
        assert "ValueError('cannot apply 3')" in letter.reason
        assert ("failed 3 attempts" if ordered else "failed 3 deliveries") in letter.reason
        assert sorted(handler.applied) == [b"1", b"2", b"4", b"5"]
        if ordered:  # the message after the poison one waited for it
            assert handler.applied == [b"1", b"2", b"4", b"5"]


async def test_a_transient_error_is_retried_in_place_with_backoff_and_never_dead_lettered(nc: Client) -> None:
    async with lane(nc) as ln:
        await ln.publish(b"x")
        handler, stop = Recorder(once={b"x": [TransientError(f"down {i}") for i in range(4)]}), asyncio.Event()
        # max_deliveries=1 and attempts=1: a transient failure must not count against either.
        policy = Policy(batch=1, max_deliveries=1, attempts=1, retry_base_s=0.1, retry_max_s=1.0)
        async with running(ln.runtime(handler, stop, policy), stop):
            await until(lambda: handler.applied == [b"x"], what="applied after the outage")
        times = [t for t, _, _ in handler.calls]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) == 4
        assert [g >= want for g, want in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True)] == [True] * 4, gaps
        assert {tuple(d) for _, _, d in handler.calls} == {(1,)}  # retried in place: one delivery
        assert await ln.dead_letters() == []


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_permanent_error_is_dead_lettered_without_retry(nc: Client, ordered: bool) -> None:
    async with lane(nc) as ln:
        seqs = await ln.publish(b"a", b"poison", b"c")
        handler, stop = Recorder(always={b"poison": PermanentError("not a valid command")}), asyncio.Event()
        async with running(ln.runtime(handler, stop, Policy(batch=10, ordered=ordered, **FAST)), stop):
            letters = await until(ln.dead_letters, what="a dead letter")
            await until(lambda: len(handler.applied) == 2, what="the others applied")
        assert [(d.stream_seq, d.reason) for d in letters] == [(seqs[1], "not a valid command")]
        assert sorted(handler.applied) == [b"a", b"c"]
        alone = [batch for batch in handler.calls_with(b"poison") if batch == [b"poison"]]
        assert len(alone) == 1  # isolated once, dead-lettered at once: never retried


async def test_rejects_are_dead_lettered_and_the_rest_acked(nc: Client) -> None:
    async with lane(nc) as ln:
        seqs = await ln.publish(b"ok", b"bad", b"part")
        stop, seen = asyncio.Event(), []

        async def handler(msgs: list[Msg]) -> list[Rejected]:
            seen.extend(m.data for m in msgs)
            by = {m.data: m for m in msgs}
            return [Rejected(by[b"bad"], "undecodable"), Rejected(by[b"part"], "1 bad point", b"[1]", True)]

        async with running(ln.runtime(handler, stop, Policy(batch=10)), stop):
            letters = await until(lambda: _two(ln), what="both dead letters")
        assert sorted((d.stream_seq, d.reason, d.payload) for d in letters) == [
            (seqs[1], "undecodable", "bad"),
            (seqs[2], "1 bad point", "[1]"),
        ]
        info = await ln.js.consumer_info(ln.stream, ln.spec.durable)
        assert (info.num_ack_pending, info.num_pending, sorted(seen)) == (0, 0, [b"bad", b"ok", b"part"])


async def _two(ln):  # type: ignore[no-untyped-def]
    letters = await ln.dead_letters()
    return letters if len(letters) == 2 else None


async def test_a_crash_before_the_ack_redelivers(nc: Client) -> None:
    async with lane(nc, ack_wait_s=1.0) as ln:
        await ln.publish(b"payload")
        entered, stop_a = asyncio.Event(), asyncio.Event()

        async def stuck(msgs: list[Msg]) -> list[Rejected]:
            entered.set()
            await asyncio.Event().wait()  # never returns: the process dies here
            return []

        crashed = asyncio.create_task(ln.runtime(stuck, stop_a, Policy(batch=1)).run())
        await asyncio.wait_for(entered.wait(), 5)
        crashed.cancel()  # a crash: no ack, no nak
        await asyncio.gather(crashed, return_exceptions=True)
        handler, stop_b = Recorder(), asyncio.Event()
        async with running(ln.runtime(handler, stop_b, Policy(batch=1)), stop_b):
            await until(lambda: handler.applied, timeout=10, what="redelivered")
        assert handler.applied == [b"payload"]
        assert handler.calls[0][2] == [2]  # the second delivery


async def test_stop_ends_a_backoff_wait_promptly_and_releases_the_message(nc: Client) -> None:
    async with lane(nc, ack_wait_s=30.0) as ln:
        await ln.publish(b"m")
        failing, stop = Recorder(always={b"m": TransientError("db down")}), asyncio.Event()
        task = asyncio.create_task(ln.runtime(failing, stop, Policy(batch=1, retry_base_s=30.0)).run())
        await until(lambda: failing.calls, what="first attempt")
        await asyncio.sleep(0.1)  # now inside the 30 s back-off
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 1.0
        # Released with a nak, not left to ack_wait (30 s): the next consumer gets it at once.
        handler, stop_b = Recorder(), asyncio.Event()
        async with running(ln.runtime(handler, stop_b, Policy(batch=1)), stop_b):
            await until(lambda: handler.applied, timeout=5, what="redelivered after the nak")
        assert handler.applied == [b"m"]


async def test_stop_cancels_a_stuck_handler_after_the_grace_period(nc: Client) -> None:
    async with lane(nc) as ln:
        await ln.publish(b"m")
        entered, stop, cancelled = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def stuck(msgs: list[Msg]) -> list[Rejected]:
            entered.set()
            try:
                await asyncio.Event().wait()  # e.g. a pool checkout while PostgreSQL is down
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return []

        task = asyncio.create_task(ln.runtime(stuck, stop, Policy(batch=1, grace_s=0.3)).run())
        await asyncio.wait_for(entered.wait(), 5)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert 0.3 <= time.monotonic() - started < 1.5
        assert cancelled.is_set()


async def test_the_tick_hook_runs_without_messages(nc: Client) -> None:
    async with lane(nc) as ln:
        ticks: list[float] = []

        async def tick() -> None:
            ticks.append(time.monotonic())

        handler, stop = Recorder(), asyncio.Event()
        async with running(ln.runtime(handler, stop, Policy(batch=1), tick=tick, tick_s=0.1), stop):
            await until(lambda: len(ticks) >= 5, timeout=5, what="five ticks")
        assert handler.calls == []
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert min(gaps) >= 0.09 and max(gaps) < 1.0, gaps


async def _crash_on(ln: Lane, poison: bytes, policy: Policy, applied: list[bytes], batches: list[list[bytes]]) -> bool:
    """One worker process's life: it dies (no ack, no nak) if it gets to ``poison``; True when it died."""
    entered, stop = asyncio.Event(), asyncio.Event()

    async def handler(msgs: list[Msg]) -> list[Rejected]:
        batches.append([m.data for m in msgs])
        if poison in batches[-1]:
            entered.set()
            await asyncio.Event().wait()  # the process dies in here
        applied.extend(m.data for m in msgs)
        return []

    task = asyncio.create_task(ln.runtime(handler, stop, policy).run())
    died = await until(lambda: "died" if entered.is_set() else "lived" if len(applied) == 2 else None,
                       timeout=10, what="a death on the poison or the others applied")  # fmt: skip
    if died == "died":
        task.cancel()  # a crash: no ack, no nak, no clean-up
        await asyncio.gather(task, return_exceptions=True)
        return True
    stop.set()
    await asyncio.wait_for(task, 10)
    return False


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_message_the_worker_dies_on_is_dead_lettered_and_those_behind_it_are_handled(
    nc: Client, ordered: bool
) -> None:
    async with lane(nc, ack_wait_s=1.0) as ln:
        seqs = await ln.publish(b"a", b"poison", b"c")
        policy = Policy(batch=10, ordered=ordered, crash_limit=2, **FAST)
        applied: list[bytes] = []
        batches: list[list[bytes]] = []
        deaths = 0
        while await _crash_on(ln, b"poison", policy, applied, batches):
            deaths += 1
            assert deaths <= 5, f"still dying after {deaths} restarts: {batches}"
        (letter,) = await ln.dead_letters()
        assert (letter.stream_seq, letter.payload) == (seqs[1], "poison")
        assert "the worker died 2 times while handling this message alone" in letter.reason
        # The batch it came in, then twice alone: c was redelivered with it every time but never blamed.
        assert deaths == 3
        assert batches[0] == [b"a", b"poison", b"c"]
        assert [b for b in batches[1:] if b"poison" in b] == [[b"poison"], [b"poison"]]
        assert sorted(applied) == [b"a", b"c"]
        if ordered:
            assert applied == [b"a", b"c"]


async def test_a_clean_stop_while_handling_a_redelivered_message_is_not_counted_as_a_death(nc: Client) -> None:
    async with lane(nc, ack_wait_s=1.0) as ln:
        await ln.publish(b"slow")
        policy = Policy(batch=1, crash_limit=1, grace_s=0.2, **FAST)
        assert await _crash_on(ln, b"slow", policy, [], [])  # delivery 1 dies: redelivered later
        entered, stop = asyncio.Event(), asyncio.Event()

        async def stuck(msgs: list[Msg]) -> list[Rejected]:
            entered.set()
            await asyncio.Event().wait()
            return []

        task = asyncio.create_task(ln.runtime(stuck, stop, policy).run())
        await until(entered.is_set, timeout=10, what="the redelivery handled alone")
        stop.set()  # SIGTERM: the handler is cancelled after grace_s and the message released
        await asyncio.wait_for(task, 5)
        recorder, stop_b = Recorder(), asyncio.Event()
        async with running(ln.runtime(recorder, stop_b, policy), stop_b):
            await until(lambda: recorder.applied, timeout=10, what="handled after the stop")
        # crash_limit=1: had the stop left its journal entry, this delivery would have been dead-lettered.
        assert recorder.applied == [b"slow"]
        assert await ln.dead_letters() == []


@pytest.mark.parametrize("linger_s", [0.0, 0.6])
async def test_a_short_fetch_lingers_for_the_messages_that_follow(nc: Client, linger_s: float) -> None:
    """Policy.linger_s: one batch (one transaction) for messages arriving close together; none without it."""
    async with lane(nc) as ln:
        handler, stop = Recorder(), asyncio.Event()
        async with running(ln.runtime(handler, stop, Policy(batch=10, ordered=True, linger_s=linger_s)), stop):
            await ln.publish(b"1")
            await asyncio.sleep(0.15)  # the scenario: the next messages come a little later
            await ln.publish(b"2", b"3")
            await until(lambda: len(handler.applied) == 3, what="all applied")
        batches = [batch for _, batch, _ in handler.calls]
        if linger_s:
            assert batches == [[b"1", b"2", b"3"]]
        else:
            assert batches[0] == [b"1"]


async def test_a_lone_message_is_handled_at_once_and_several_linger_with_a_minimum(nc: Client) -> None:
    """Policy.linger_min: a fetch of one message (a trickle) is handled without waiting; one of two or more waits."""
    policy = Policy(batch=10, ordered=True, linger_s=2.0, linger_min=2)
    async with lane(nc) as ln:
        handler, stop = Recorder(), asyncio.Event()
        await ln.publish(b"1", b"2")  # before the runtime starts: its first fetch takes both
        async with running(ln.runtime(handler, stop, policy), stop):
            await asyncio.sleep(0.3)
            await ln.publish(b"3")  # within the linger of the first fetch: the same batch
            await until(lambda: len(handler.applied) == 3, what="the first three applied")
            started = time.monotonic()
            await ln.publish(b"4")  # alone: no linger
            await until(lambda: len(handler.applied) == 4, timeout=1.5, what="the lone message applied at once")
            assert time.monotonic() - started < 1.5  # a linger would have held it for 2 s
        assert [batch for _, batch, _ in handler.calls] == [[b"1", b"2", b"3"], [b"4"]]


class HighWaterMark(Recorder):
    """A handler keeping a projection's checkpoint: a message at or below it counts as applied and is skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.checkpoint = 0

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        fresh = [m for m in msgs if m.metadata.sequence.stream > self.checkpoint]
        self.calls.append((time.monotonic(), [m.data for m in fresh], [m.metadata.num_delivered for m in fresh]))
        self.applied.extend(m.data for m in fresh)
        self.checkpoint = max([self.checkpoint, *(m.metadata.sequence.stream for m in msgs)])
        return []


@pytest.mark.parametrize("ordered", [True, False])
async def test_what_a_dead_process_held_comes_before_newer_messages_for_an_ordered_consumer(
    nc: Client, ordered: bool
) -> None:
    # ack_wait 30 s: the in-flight messages would come back only after the test's deadline.
    async with lane(nc, ack_wait_s=30.0) as ln:
        await ln.publish(b"1", b"2", b"3", b"4", b"5")
        # A process fetched 1-3 and died holding them (no ack, no nak); 4 and 5 were published meanwhile.
        dead = await ln.js.pull_subscribe_bind(ln.spec.durable, ln.stream)
        assert [m.data for m in await dead.fetch(3, timeout=5)] == [b"1", b"2", b"3"]
        await dead.unsubscribe()
        handler, stop = HighWaterMark(), asyncio.Event()
        async with running(ln.runtime(handler, stop, Policy(batch=10, ordered=ordered, **FAST)), stop):
            await until(lambda: len(handler.applied) >= 2, timeout=5, what="messages applied")
            if ordered:
                await until(lambda: len(handler.applied) == 5, timeout=5, what="all five applied")
        if ordered:
            # Reset to the ack floor: 1-3 again first, each alone (as redeliveries: the crash journal names
            # each). Without the reset 4-5 came first and 1-3 were skipped under the mark.
            assert handler.applied == [b"1", b"2", b"3", b"4", b"5"]
            assert [batch for _, batch, _ in handler.calls][:3] == [[b"1"], [b"2"], [b"3"]]
        else:  # no checkpoint to protect: an unordered consumer (ingest) takes what is new and is not reset
            assert handler.applied[:2] == [b"4", b"5"]


async def test_the_reset_at_start_is_retried_until_the_consumer_answers(nc: Client) -> None:
    # As in a cluster electing a consumer leader after a node restart: at first, the consumer does not answer.
    async with lane(nc) as ln:
        await ln.js.delete_consumer(ln.stream, ln.spec.durable)
        handler, stop = Recorder(), asyncio.Event()
        async with running(ln.runtime(handler, stop, Policy(batch=10, ordered=True, **FAST)), stop) as task:
            await asyncio.sleep(0.5)  # a few failed attempts (FAST: 0.05-0.2 s apart)
            assert not task.done()  # still trying, not crashed
            await ln.js.add_consumer(ln.stream, ln.spec.config())
            await ln.publish(b"after")
            await until(lambda: handler.applied == [b"after"], timeout=10, what="consumed once the consumer answered")
