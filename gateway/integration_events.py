"""Platform (integration) events on core NATS: ``<prefix>.<name>``, best effort."""

import structlog

from gateway.state import GatewayState

log = structlog.get_logger()


async def publish_integration_event(gw: GatewayState, name: str, payload: bytes) -> None:
    """Publish ``payload`` on ``<event_prefix>.<name>``; a failure is logged, never raised (NFR-005)."""
    try:
        await gw.nc.publish(f"{gw.settings.event_prefix}.{name}", payload)
    except Exception as exc:
        log.warning("integration_event_failed", integration_event=name, error=repr(exc))
