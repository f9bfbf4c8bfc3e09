"""Operator commands on alerts: acknowledge and resolve.

The alert engine opens (and auto-resolves) alerts; an alert's events live on
``telemetry.events.alert.<alert_id>`` and the last one is its status (alert.triggered: active,
alert.acknowledged: acknowledged, alert.resolved: resolved). Operator writes are conditional on that
last sequence, so an operator and the engine never both win.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gateway.commands.aggregate import Aggregate, CommandContext
from gateway.errors import conflict, not_found
from gateway.integration_events import IntegrationEvents
from telemetry_schemas.enums import AlertStatus
from telemetry_schemas.events import AlertAcknowledged, AlertEvent, AlertResolved, AlertTriggered

# The read model a write waits for.
PROJECTION = "alerts"


@dataclass(frozen=True)
class AlertHistory:
    """An alert's events so far and the sequence of the last one."""

    seq: int
    triggered: AlertTriggered
    acknowledged: AlertAcknowledged | None = None
    resolved: AlertResolved | None = None

    @property
    def status(self) -> AlertStatus:
        """The status the last event gives."""
        if self.resolved is not None:
            return AlertStatus.RESOLVED
        return AlertStatus.ACKNOWLEDGED if self.acknowledged is not None else AlertStatus.ACTIVE


def acknowledgement(history: AlertHistory, note: str | None, ctx: CommandContext) -> AlertAcknowledged:
    """alert.acknowledged; only an active alert can be acknowledged (409)."""
    alert_id = history.triggered.alert_id
    if history.status is AlertStatus.ACKNOWLEDGED:
        raise conflict(f"alert {alert_id} is already acknowledged")
    if history.status is AlertStatus.RESOLVED:
        raise conflict(f"alert {alert_id} is resolved")
    return AlertAcknowledged(alert_id=alert_id, at=datetime.now(UTC), by=ctx.principal, note=note)


def resolution(history: AlertHistory, note: str | None, ctx: CommandContext) -> AlertResolved:
    """alert.resolved, by the caller; 409 when it is resolved already."""
    t = history.triggered
    if history.resolved is not None:
        raise conflict(f"alert {t.alert_id} is already resolved")
    return AlertResolved(
        alert_id=t.alert_id, rule_id=t.rule_id, device_id=t.device_id, at=datetime.now(UTC), by=ctx.principal,
        note=note,
    )  # fmt: skip


class AlertCommands:
    """The operator's write side of alerts."""

    def __init__(self, alerts: Aggregate[AlertEvent], announce: IntegrationEvents) -> None:
        self._alerts = alerts
        self._announce = announce

    async def history(self, alert_id: str) -> AlertHistory:
        """The alert as its subject tells it; 404 when the subject has no alert.triggered."""
        current = await self._alerts.current(alert_id)
        if current.last is None:
            raise not_found(f"alert {alert_id!r} not found")
        if isinstance(current.last, AlertTriggered):
            return AlertHistory(seq=current.seq, triggered=current.last)
        opened = await self._alerts.first(alert_id)
        if not isinstance(opened, AlertTriggered):
            raise not_found(f"alert {alert_id!r} not found (its subject holds no alert.triggered)")
        if isinstance(current.last, AlertAcknowledged):
            return AlertHistory(seq=current.seq, triggered=opened, acknowledged=current.last)
        return AlertHistory(seq=current.seq, triggered=opened, resolved=current.last)

    async def _append(self, history: AlertHistory, event: AlertEvent, ctx: CommandContext) -> None:
        alert_id = history.triggered.alert_id
        await self._alerts.append(
            alert_id, event, history.seq, ctx,
            on_conflict=f"alert {alert_id} changed concurrently (e.g. resolved by the alert engine); read it and retry",
        )  # fmt: skip

    async def acknowledge(self, alert_id: str, note: str | None, ctx: CommandContext) -> AlertHistory:
        """Acknowledge an active alert; returns its history with the acknowledgement."""
        history = await self.history(alert_id)
        event = acknowledgement(history, note, ctx)
        await self._append(history, event, ctx)
        return replace(history, acknowledged=event)

    async def resolve(self, alert_id: str, note: str | None, ctx: CommandContext) -> AlertHistory:
        """Resolve an active or acknowledged alert; returns its history with the resolution."""
        history = await self.history(alert_id)
        event = resolution(history, note, ctx)
        await self._append(history, event, ctx)
        await self._announce.announce("alert.resolved", event)
        return replace(history, resolved=event)
