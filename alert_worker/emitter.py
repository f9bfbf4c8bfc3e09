"""Transitions → alert.triggered / alert.resolved on EVENTS, with deterministic message ids."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from nats.js import JetStreamContext

from alert_worker.rules import Rule
from telemetry_core.alerting.state_machine import Closed, Transition
from telemetry_core.events_out import EventsOut
from telemetry_core.headers import MSG_ID
from telemetry_core.metrics import ALERT_TRANSITIONS
from telemetry_core.topology import alert_subject
from telemetry_schemas.codecs import json_encoder
from telemetry_schemas.events import AlertResolved, AlertTriggered
from telemetry_schemas.integration import ALERT_RESOLVED, ALERT_TRIGGERED

SYSTEM = "system"


@dataclass(frozen=True)
class Emitted:
    """A transition with what the event needs to say."""

    rule: Rule
    device_id: str
    transition: Transition


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def to_event(e: Emitted) -> AlertTriggered | AlertResolved:
    """The domain event of a transition."""
    spec, t = e.rule.spec, e.transition
    if isinstance(t, Closed):
        return AlertResolved(alert_id=t.alert_id, rule_id=e.rule.rule_id, device_id=e.device_id, at=_at(t.wall),
                             by=SYSTEM, note=t.reason)  # fmt: skip
    if t.kind == "no_data":
        message = f"no data from {e.device_id} for {spec.no_data_for}s ({spec.metric_name}, rule {spec.name!r})"
    else:
        message = (
            f"{spec.metric_name} {spec.condition.value} {spec.threshold_value} on {e.device_id}: value {t.value!r} "
            f"(rule {spec.name!r})"
        )
    triggered_at = _at(t.event_time)
    # When it resolves by itself if no breach follows (a later breach pushes the real moment on);
    # a no-data alert resolves when data resumes instead.
    auto_resolve_at = (
        triggered_at + timedelta(seconds=spec.auto_resolve_timeout)
        if spec.auto_resolve and t.kind != "no_data"
        else None
    )
    return AlertTriggered(
        alert_id=t.alert_id, rule_id=e.rule.rule_id, rule_name=spec.name, device_id=e.device_id,
        metric_name=spec.metric_name, level=spec.level, message=message, current_value=t.value,
        threshold_value=spec.threshold_value, kind=t.kind, triggered_at=triggered_at,
        auto_resolve_at=auto_resolve_at, notification_channels=list(spec.notification_channels),
    )  # fmt: skip


class Emitter:
    """Publishes transitions; a redelivered input yields the same ids, which JetStream de-duplicates."""

    def __init__(self, js: JetStreamContext, events: EventsOut, log: structlog.stdlib.BoundLogger) -> None:
        self._js, self._events, self._log = js, events, log

    async def publish(self, emitted: list[Emitted]) -> None:
        """Publish every transition and await the PubAcks; then the integration events, best effort."""
        events = [to_event(e) for e in emitted]
        await asyncio.gather(
            *(
                self._js.publish(
                    alert_subject(ev.alert_id),
                    json_encoder.encode(ev),
                    timeout=5.0,
                    headers={MSG_ID: f"{ev.alert_id}:{'triggered' if isinstance(ev, AlertTriggered) else 'resolved'}"},
                )
                for ev in events
            )
        )
        for ev in events:
            await self._events.publish(ALERT_TRIGGERED if isinstance(ev, AlertTriggered) else ALERT_RESOLVED, ev)
        for ev in events:
            ALERT_TRANSITIONS.labels("triggered" if isinstance(ev, AlertTriggered) else "resolved").inc()
            self._log.info("alert_transition", alert_id=ev.alert_id, kind=type(ev).__name__, rule_id=ev.rule_id)
