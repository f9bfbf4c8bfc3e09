"""A private stream + durable consumer per test, a runtime running in the background, and DLQ reading."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import msgspec
import structlog
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from telemetry_core.consumer_runtime import ConsumerRuntime, Handler, Policy, Tick
from telemetry_core.topology import DLQ_STREAM, ConsumerSpec, dlq_subject
from telemetry_schemas.dead_letter import DeadLetter
from tests.support.ids import unique

T = TypeVar("T")
LOG = structlog.get_logger().bind(test="runtime")


async def until(fn: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0, what: str = "") -> T:  # noqa: ASYNC109
    """Async ``eventually``: poll ``fn`` without blocking the event loop until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what or fn}; last: {result!r}")
        await asyncio.sleep(0.02)


@dataclass
class Lane:
    """One test's stream, subject space, consumer and dead-letter subject."""

    js: JetStreamContext
    stream: str
    prefix: str
    spec: ConsumerSpec
    worker: str

    async def publish(self, *payloads: bytes) -> list[int]:
        """Publish each payload; return their stream sequences."""
        return [(await self.js.publish(f"{self.prefix}.m", p)).seq for p in payloads]

    def runtime(self, handler: Handler, stop: asyncio.Event, policy: Policy, *, tick: Tick | None = None,
                tick_s: float = 1.0) -> ConsumerRuntime:  # fmt: skip
        return ConsumerRuntime(self.js, self.spec, self.worker, handler, stop, LOG, policy, tick=tick, tick_s=tick_s)

    async def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter of this lane's worker so far."""
        sub = await self.js.pull_subscribe(dlq_subject(self.worker), stream=DLQ_STREAM)
        letters: list[DeadLetter] = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(100, timeout=0.3)
                except (NatsTimeoutError, TimeoutError):
                    return letters
                letters.extend(msgspec.json.decode(m.data, type=DeadLetter) for m in msgs)
        finally:
            await sub.unsubscribe()


@asynccontextmanager
async def lane(nc: Client, *, ack_wait_s: float = 30.0) -> AsyncIterator[Lane]:
    """A fresh stream and durable consumer, deleted afterwards."""
    js = nc.jetstream()
    uid = unique("rt")
    stream, prefix = f"RT_{uid}", f"rt.{uid}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"], storage=StorageType.FILE))
    spec = ConsumerSpec(stream, f"c_{uid}", f"{prefix}.>", ack_wait_s=ack_wait_s)
    await js.add_consumer(stream, spec.config())
    try:
        yield Lane(js, stream, prefix, spec, f"test_{uid}")
    finally:
        await js.delete_stream(stream)


@asynccontextmanager
async def running(runtime: ConsumerRuntime, stop: asyncio.Event) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``runtime`` in the background; stop it (and require that it ends) on the way out."""
    task = asyncio.create_task(runtime.run())
    try:
        yield task
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 10)
