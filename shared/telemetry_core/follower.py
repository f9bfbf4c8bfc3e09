"""Follow a subject filter of a stream from its first message, in order, into a callback.

An ordered consumer: no durable state on the server, replays from the start on every process
start, which is how in-memory caches (metric definitions, alert rules) are rebuilt.
"""

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy


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
        self._decode, self._apply, self._log = decode, apply, log
        self.last_seq = 0
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        # Set once everything the stream held at subscription time has been applied.
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        """Subscribe and follow in the background."""
        self._sub = await self._js.subscribe(
            self._subject, stream=self._stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0:
            self.caught_up.set()
        self._task = asyncio.create_task(self._follow(self._sub))

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
            if msg.metadata.num_pending == 0:
                self.caught_up.set()

    async def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Wait until sequence ``seq`` has been applied (read-your-writes)."""
        async with self._advanced:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.last_seq >= seq), timeout_s)
        return self.last_seq >= seq

    async def wait_caught_up(self, timeout_s: float) -> None:
        """Wait until the backlog present at start is applied; raise TimeoutError after ``timeout_s``."""
        await asyncio.wait_for(self.caught_up.wait(), timeout_s)

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            with suppress(Exception):
                await self._sub.unsubscribe()
