"""Metric definitions kept in memory from the EVENTS stream, so validation costs no database round trip."""

import asyncio
from contextlib import suppress

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from telemetry_core.metric_rules import definition_problem
from telemetry_core.topology import EVENTS_STREAM, METRIC_EVENTS
from telemetry_schemas.codecs import metric_event_decoder
from telemetry_schemas.events import MetricDefined, MetricDeleted
from telemetry_schemas.values import Point


class DefinitionsCache:
    """name → definition, fed by an ordered consumer over telemetry.events.metric.> from the start."""

    def __init__(self, js: JetStreamContext, log: structlog.stdlib.BoundLogger) -> None:
        self._js = js
        self._log = log
        self.definitions: dict[str, MetricDefined] = {}
        self.last_seq = 0
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def check(self, point: Point) -> tuple[str, str] | None:
        """Validate ``point`` against its metric's definition, if there is one."""
        definition = self.definitions.get(point.metric_name)
        return None if definition is None else definition_problem(point, definition)

    async def start(self) -> None:
        """Subscribe and follow the stream in the background."""
        sub = await self._js.subscribe(
            METRIC_EVENTS, stream=EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        self._task = asyncio.create_task(self._follow(sub))

    async def _follow(self, sub: "JetStreamContext.PushSubscription") -> None:
        async for msg in sub.messages:
            try:
                event = metric_event_decoder.decode(msg.data)
            except msgspec.DecodeError as exc:
                self._log.warning("undecodable_event", subject=msg.subject, error=str(exc))
                event = None
            match event:
                case MetricDefined(name=name):
                    self.definitions[name] = event
                case MetricDeleted(name=name):
                    self.definitions.pop(name, None)
                case None:
                    pass
            async with self._advanced:
                self.last_seq = msg.metadata.sequence.stream
                self._advanced.notify_all()

    async def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Wait until the cache has applied stream sequence ``seq`` (read-your-writes)."""
        async with self._advanced:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait_for(lambda: self.last_seq >= seq), timeout_s)
        return self.last_seq >= seq

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
