"""Metric definitions kept in memory from the EVENTS stream, so validation costs no database round trip."""

import structlog
from nats.js import JetStreamContext

from telemetry_core.follower import Follower
from telemetry_core.metric_rules import PointRule, compile_rule
from telemetry_core.topology import EVENTS_STREAM, METRIC_EVENTS
from telemetry_schemas.codecs import metric_event_decoder
from telemetry_schemas.events import MetricDefined, MetricDeleted, MetricEvent
from telemetry_schemas.values import Point


class DefinitionsCache:
    """name → definition, following telemetry.events.metric.> from the start."""

    def __init__(self, js: JetStreamContext, log: structlog.stdlib.BoundLogger) -> None:
        self.definitions: dict[str, MetricDefined] = {}
        self._rules: dict[str, PointRule] = {}
        self._follower = Follower(js, EVENTS_STREAM, METRIC_EVENTS, metric_event_decoder.decode, self._apply, log)

    def _apply(self, event: MetricEvent, _seq: int) -> None:
        match event:
            case MetricDefined(name=name):
                self.definitions[name] = event
                self._rules[name] = compile_rule(event)
            case MetricDeleted(name=name):
                self.definitions.pop(name, None)
                self._rules.pop(name, None)

    def check(self, point: Point) -> tuple[str, str] | None:
        """Validate ``point`` against its metric's definition, if there is one."""
        rule = self._rules.get(point.metric_name)
        return None if rule is None else rule(point)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Follow the stream and return once every existing definition is loaded.

        Validating points against a half-loaded cache would accept what a definition forbids.
        """
        await self._follower.start()
        await self._follower.wait_caught_up(timeout_s)

    def get(self, name: str) -> MetricDefined | None:
        """The current definition of ``name`` (the cache is complete once start() returned)."""
        return self.definitions.get(name)

    async def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Wait until the cache has applied stream sequence ``seq`` (read-your-writes)."""
        return await self._follower.wait_for(seq, timeout_s)

    @property
    def follower(self) -> Follower:
        """The ordered consumer feeding the cache (its ``healthy`` and ``last_error`` go to /health/detailed)."""
        return self._follower

    async def stop(self) -> None:
        """Stop following."""
        await self._follower.stop()
