"""Read model: alerts and their lifecycle (E4), from alert.* events; also the rules' trigger statistics."""

from typing import Any, assert_never

from psycopg import AsyncCursor
from psycopg.types.json import Json, Jsonb

from projection_worker.projections.alert_rules import TRIGGER_STATS_LOCK
from telemetry_core.topology import ALERTS_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import alert_event_decoder, json_encoder
from telemetry_schemas.enums import AlertStatus
from telemetry_schemas.events import AlertAcknowledged, AlertEvent, AlertResolved, AlertTriggered

NAME = "alerts"
SPEC: ConsumerSpec = ALERTS_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.alerts",)
# Run by `telemetry replay alerts` with the truncation: the statistics are rebuilt with the alerts.
RESET: tuple[str, ...] = ("UPDATE telemetry.alert_rules SET total_triggers = 0, last_triggered = NULL",)

_LOCK = "SELECT pg_advisory_xact_lock(%s)"
# The rule's statistics move only when the alert row is new (a repeated event inserts nothing).
_TRIGGER = """
WITH inserted AS (
    INSERT INTO telemetry.alerts (alert_id, rule_id, rule_name, device_id, metric_name, level, status, kind,
        message, current_value, threshold_value, triggered_at, auto_resolve_at, notification_channels)
    VALUES (%(alert_id)s, %(rule_id)s, %(rule_name)s, %(device_id)s, %(metric_name)s, %(level)s, %(status)s,
        %(kind)s, %(message)s, %(current_value)s, %(threshold_value)s, %(triggered_at)s, %(auto_resolve_at)s,
        %(notification_channels)s)
    ON CONFLICT (alert_id) DO NOTHING
    RETURNING rule_id, triggered_at
)
UPDATE telemetry.alert_rules r
SET total_triggers = r.total_triggers + 1, last_triggered = GREATEST(r.last_triggered, inserted.triggered_at)
FROM inserted WHERE r.rule_id = inserted.rule_id
"""
_ACKNOWLEDGE = """
UPDATE telemetry.alerts SET status = %(status)s, acknowledged_at = %(at)s, acknowledged_by = %(by)s,
    acknowledgement_note = %(note)s
WHERE alert_id = %(alert_id)s AND status = 'active'
"""
_RESOLVE = """
UPDATE telemetry.alerts SET status = %(status)s, resolved_at = %(at)s, resolved_by = %(by)s,
    resolution_note = %(note)s
WHERE alert_id = %(alert_id)s AND status <> 'resolved'
"""


def decode(data: bytes) -> AlertEvent:
    """Decode an alert event."""
    return alert_event_decoder.decode(data)


def _json(value: Any) -> Json:
    return Json(value, dumps=lambda obj: json_encoder.encode(obj).decode())


async def apply(cur: AsyncCursor[Any], messages: list[AlertEvent]) -> None:
    """Apply events in stream order."""
    if any(isinstance(event, AlertTriggered) for event in messages):
        await cur.execute(_LOCK, (TRIGGER_STATS_LOCK,))  # see alert_rules: orders us with rule creation
    for event in messages:
        match event:
            case AlertTriggered():
                await cur.execute(
                    _TRIGGER,
                    {
                        "alert_id": event.alert_id,
                        "rule_id": event.rule_id,
                        "rule_name": event.rule_name,
                        "device_id": event.device_id,
                        "metric_name": event.metric_name,
                        "level": event.level.value,
                        "status": AlertStatus.ACTIVE.value,
                        "kind": event.kind,
                        "message": event.message,
                        "current_value": _json(event.current_value),
                        "threshold_value": _json(event.threshold_value),
                        "triggered_at": event.triggered_at,
                        "auto_resolve_at": event.auto_resolve_at,
                        "notification_channels": Jsonb(event.notification_channels),
                    },
                )
            case AlertAcknowledged():
                params = {"alert_id": event.alert_id, "at": event.at, "by": event.by, "note": event.note}
                await cur.execute(_ACKNOWLEDGE, {**params, "status": AlertStatus.ACKNOWLEDGED.value})
            case AlertResolved():
                params = {"alert_id": event.alert_id, "at": event.at, "by": event.by, "note": event.note}
                await cur.execute(_RESOLVE, {**params, "status": AlertStatus.RESOLVED.value})
            case _:
                assert_never(event)
