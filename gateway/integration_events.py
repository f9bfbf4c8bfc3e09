"""Platform (integration) events on core NATS: ``<prefix>.<name>``, best effort."""

import structlog
from nats.aio.client import Client

from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.events import DomainEvent

log = structlog.get_logger()


class IntegrationEvents:
    """Announces what a command did to other platform services; never fails the command (NFR-005)."""

    def __init__(self, nc: Client, prefix: str) -> None:
        self._nc = nc
        self._prefix = prefix

    async def announce(self, name: str, event: DomainEvent) -> None:
        """Publish ``event`` on ``<prefix>.<name>``; a failure is logged, never raised."""
        try:
            await self._nc.publish(f"{self._prefix}.{name}", json_encoder.encode(event))
        except Exception as exc:
            log.warning("integration_event_failed", integration_event=name, error=repr(exc))
