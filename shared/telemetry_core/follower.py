"""Follow a subject filter of a stream from its first message, in order, into a callback.

An ordered consumer: no durable state on the server, replays from the start on every process
start, which is how in-memory caches (metric definitions, alert rules) are rebuilt.

A cache that silently stops updating is worse than a crash, so the following task is supervised:
when applying a message raises, or the subscription ends or fails, the failure is logged, ``healthy``
turns False (``last_error`` says why) and the follower resubscribes from the first message it has not
applied, with back-off, until it works again or ``stop()`` is called.

In a cluster the ordered consumer (R1, ephemeral) lives on any replica of the stream, and that replica answers
its num_pending and delivers from its own copy: a replica still catching up (a node just restarted) says "nothing
pending" while the stream holds messages the follower never saw. So every subscription first asks the stream
leader for the last message of the filter, and a consumer whose end falls short of it is dropped and made again
(``ReplicaBehind``): caught up means every message the *stream* held at subscription time is applied. (Without
it, followers started within 2.5 s of a node's restart said they had caught up with nothing applied in 27 of 625
starts: an alert engine taking over a partition then had no rules, skimmed its backlog as unwatched and raised no
alert, the cluster fault test's intermittent "no alert within 60 s".)
"""

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from telemetry_core.stopping import bounded

_RETRY_MAX_S = 5.0
# JetStream's "no message found" (a filter that matches nothing yet); "stream not found" is another 404 (10059).
_NO_MESSAGE_FOUND = 10037


class ReplicaBehind(Exception):
    """The consumer's replica holds less of the filter than the stream leader: subscribe again."""


class Follower:
    """Applies every decoded message to ``apply``; ``last_seq`` says how far it got."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str,
        decode: Callable[[bytes], Any],
        apply: Callable[[Any, int], None],
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self._js, self._stream, self._subject = js, stream, subject
        self._decode, self._apply, self._log = decode, apply, log.bind(follower=subject)
        self.last_seq = 0
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        # Set once everything the stream held at subscription time has been applied.
        self.caught_up = asyncio.Event()
        # The consumer sequence caught_up waits for when the backlog was already delivered at subscription time.
        self._catch_up_to = 1 << 63
        # The last stream sequence of the filter the stream leader held when the current consumer was made.
        self._leader_end = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._failures = 0

    @property
    def healthy(self) -> bool:
        """Following, and the last attempt did not fail (for health checks)."""
        return self._task is not None and not self._task.done() and self.last_error is None

    async def start(self) -> None:
        """Subscribe and follow in the background.

        A first subscription that fails (JetStream's API times out while a cluster elects its leaders, the stream
        is not there yet) is retried by the supervisor like any later one: the caller's ``wait_caught_up`` bounds
        how long it may take. An alert engine taking over a partition crashed on such a timeout, leaving no engine.
        """
        try:
            self._sub = await self._subscribe()
        except Exception as exc:
            self.last_error = repr(exc)
            self._log.warning("follower_subscribe_failed_retrying", error=self.last_error)
        self._task = asyncio.create_task(self._supervise())

    async def _leader_last_seq(self) -> int:
        """The stream sequence of the filter's last message as the stream leader has it (0: none yet).

        A plain (not direct) get: only the stream leader answers it, never a replica that is behind.
        """
        try:
            msg = await self._js.get_last_msg(self._stream, self._subject)
        except NotFoundError as exc:
            if exc.err_code == _NO_MESSAGE_FOUND:
                return 0
            raise
        return int(msg.seq or 0)

    async def _subscribe(self) -> Any:
        # Asked before the consumer is made: a message published in between is one more, never one too few.
        leader_end = await self._leader_last_seq()
        # Resume after the last applied message: the ordered consumer is ephemeral, its position is ours.
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        if self.last_seq:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.last_seq + 1)
        sub = await self._js.subscribe(self._subject, stream=self._stream, ordered_consumer=True, config=config)
        try:
            info = await sub.consumer_info()
        except Exception:
            await bounded(sub.unsubscribe, 1.0, "follower_unsubscribe", self._log)  # not left delivering to nobody
            raise
        self._catch_up_to = 1 << 63  # a new consumer counts from 1: nothing of an earlier one's count holds
        self._leader_end = leader_end
        if info.num_pending == 0:
            # Nothing left to deliver, but what was delivered may still sit in our buffer unapplied (the server
            # pushes a small backlog before this answer comes back): caught up once the last of it is applied.
            # The consumer is new, so its delivered count is what sits in the buffer. (Not the delivered stream
            # sequence: a filtered consumer moves that past the messages it skips, so no message may ever reach it.)
            delivered = info.delivered.consumer_seq if info.delivered and info.delivered.consumer_seq else 0
            if delivered == 0 and self.last_seq < leader_end:
                # Nothing will come, yet the leader holds messages not applied: this replica has not got them (its
                # delivered stream sequence is no witness: a replica's store can begin past them).
                await bounded(sub.unsubscribe, 1.0, "follower_unsubscribe", self._log)
                raise ReplicaBehind(
                    f"the consumer's replica of {self._stream} has nothing after sequence {self.last_seq} of "
                    f"{self._subject}, the stream leader up to {leader_end} (a replica catching up): subscribing again"
                )
            if delivered == 0:
                self.caught_up.set()
                self._recovered(self.last_seq)  # nothing left to fail on
            else:
                self._catch_up_to = delivered
        return sub

    def _recovered(self, seq: int) -> None:
        if self.last_error is not None:
            self._log.info("follower_recovered", last_seq=seq, restarts=self.restarts)
            self.last_error, self._failures = None, 0

    async def _supervise(self) -> None:
        while True:
            try:
                if self._sub is None:
                    self._sub = await self._subscribe()
                await self._follow(self._sub)
                error = "the subscription ended"
            except Exception as exc:
                error = repr(exc)
            self._failures += 1
            self.restarts += 1
            self.last_error = error
            delay = min(0.1 * 2 ** (self._failures - 1), _RETRY_MAX_S)
            self._log.error("follower_failed_resubscribing", error=error, resume_from=self.last_seq + 1,
                            attempt=self._failures, retry_in_s=delay)  # fmt: skip
            sub, self._sub = self._sub, None
            if sub is not None:
                await bounded(sub.unsubscribe, 1.0, "follower_unsubscribe", self._log)
            await asyncio.sleep(delay)

    async def _follow(self, sub: Any) -> None:
        async for msg in sub.messages:
            seq = msg.metadata.sequence.stream
            try:
                self._apply(self._decode(msg.data), seq)
            except msgspec.DecodeError as exc:
                self._log.warning("undecodable_event", subject=msg.subject, error=str(exc))
            async with self._advanced:
                self.last_seq = seq
                self._advanced.notify_all()
            self._recovered(seq)
            if msg.metadata.num_pending == 0 or msg.metadata.sequence.consumer >= self._catch_up_to:
                if seq < self._leader_end:  # the replica's end, short of what the leader held: it is behind
                    raise ReplicaBehind(
                        f"the consumer's replica of {self._stream} ended at sequence {seq}, before {self._leader_end}, "
                        f"the stream leader's last message of {self._subject}: subscribing again"
                    )
                self.caught_up.set()

    async def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Wait until sequence ``seq`` has been applied (read-your-writes)."""
        async with self._advanced:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.last_seq >= seq), timeout_s)
        return self.last_seq >= seq

    async def wait_caught_up(self, timeout_s: float) -> None:
        """Wait until the backlog present at start is applied; TimeoutError once ``timeout_s`` pass without progress.

        A stall, not a deadline: a long history (an alert engine's rules after a year of edits) replays for as
        long as it takes while messages keep being applied, with a log line per ``timeout_s`` saying how far it
        got. With a deadline, a history longer than it to replay failed every start, and every restart replayed
        it from the first message again: a process that could never start. What still fails is a follower that
        applies nothing for ``timeout_s`` (it cannot subscribe, or the stream does not answer).
        """
        seen = self.last_seq
        while True:
            try:
                await asyncio.wait_for(self.caught_up.wait(), timeout_s)
                return
            except TimeoutError:
                if self.last_seq == seen:
                    raise
            self._log.info("follower_catching_up", applied_to_seq=self.last_seq, in_last_s=timeout_s,
                           applied=self.last_seq - seen)  # fmt: skip
            seen = self.last_seq

    async def stop(self) -> None:
        """Stop following (bounded: NATS may be gone)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)
        if self._sub is not None:
            await bounded(self._sub.unsubscribe, 1.0, "follower_unsubscribe", self._log)
