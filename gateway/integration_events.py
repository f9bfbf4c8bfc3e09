"""Platform (integration) events of the gateway's commands on core NATS: ``<prefix>.<name>``, best effort."""

from nats.aio.client import Client

from gateway.metrics import EVENTS_OUT_FAILED
from telemetry_core.events_out import EventsOut
from telemetry_schemas.events import DomainEvent


class IntegrationEvents:
    """Announces what a command did to other platform services; never fails the command (NFR-005)."""

    def __init__(self, nc: Client, prefix: str) -> None:
        self._out = EventsOut(nc, prefix, on_failure=lambda name: EVENTS_OUT_FAILED.labels(name).inc())

    async def announce(self, name: str, event: DomainEvent) -> None:
        """Publish ``event`` on ``<prefix>.<name>``; a failure is counted and logged, never raised."""
        await self._out.publish(name, event)
