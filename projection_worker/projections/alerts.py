"""Read model: alerts and their lifecycle (E4), and each rule's trigger statistics, from alert.* events."""

from typing import Any, assert_never

from psycopg import AsyncCursor
from psycopg.types.json import Json, Jsonb

from telemetry_core.topology import ALERTS_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import alert_event_decoder, json_encoder
from telemetry_schemas.enums import AlertStatus
from telemetry_schemas.events import AlertAcknowledged, AlertEvent, AlertResolved, AlertTriggered

NAME = "alerts"
SPEC: ConsumerSpec = ALERTS_PROJECTION
# alert_rule_stats is keyed by rule_id alone and never joined here: the gateway joins it to the rules
# (the alert-rules projection's table) at read time, so either projection can be replayed alone.
TABLES: tuple[str, ...] = ("telemetry.alerts", "telemetry.alert_rule_stats")

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
INSERT INTO telemetry.alert_rule_stats AS s (rule_id, total_triggers, last_triggered)
SELECT rule_id, 1, triggered_at FROM inserted
ON CONFLICT (rule_id) DO UPDATE SET total_triggers = s.total_triggers + 1,
    last_triggered = GREATEST(s.last_triggered, EXCLUDED.last_triggered)
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
