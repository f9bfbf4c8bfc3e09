"""Publish platform events (FR-019) on core NATS, best effort: a failure is counted and logged, never raised.

NFR-005: event publishing failures SHALL NOT block ingestion. Core NATS (not JetStream) because the
events are notifications for other services; the durable record is the EVENTS stream itself.
"""

from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.client import Client

from telemetry_schemas.codecs import json_encoder

OnFailure = Callable[[str], None]


def _ignore(_name: str) -> None:
    return None


class EventsOut:
    """``publish(name, payload)`` sends ``payload`` (a msgspec Struct) as JSON on ``<prefix>.<name>``.

    ``on_failure`` gets the event name of each failed publish (each process counts it in its own Prometheus
    registry). ``nc`` may be a connection used only for events, so a broken one cannot touch ingestion.
    """

    def __init__(self, nc: Client, prefix: str, log: Any = None, on_failure: OnFailure = _ignore) -> None:
        self._nc = nc
        self._prefix = prefix
        self._log = log or structlog.get_logger()
        self._on_failure = on_failure
        self.failures = 0

    def subject(self, name: str) -> str:
        """The subject of event ``name``."""
        return f"{self._prefix}.{name}"

    async def publish(self, name: str, payload: Any) -> bool:
        """Publish; True when handed to the client, False (counted, logged) when that failed."""
        try:
            await self._nc.publish(self.subject(name), json_encoder.encode(payload))
        except Exception as exc:  # best effort by design (NFR-005): any failure, never raised
            self.failures += 1
            self._on_failure(name)
            self._log.warning("integration_event_failed", integration_event=name, error=repr(exc))
            return False
        return True


def events_out(nc: Client, prefix: str, log: Any = None) -> EventsOut:
    """A worker's publisher: failures counted in the worker registry (reported to the gateways' /metrics)."""
    from telemetry_core.metrics import EVENTS_OUT_FAILED

    return EventsOut(nc, prefix, log, on_failure=lambda name: EVENTS_OUT_FAILED.labels(name).inc())
