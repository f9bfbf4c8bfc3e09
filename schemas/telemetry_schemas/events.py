"""Domain events on the EVENTS stream, one tagged union decoded by one decoder."""

from datetime import datetime
from typing import Any

from telemetry_schemas.base import StreamMessage
from telemetry_schemas.enums import AlertLevel, ApiKeyScope, DataType, MetricType
from telemetry_schemas.rules import RuleSpec


class MetricDefined(StreamMessage, frozen=True, kw_only=True, tag="metric.defined"):
    """A metric definition was created (on subject telemetry.events.metric.<name>)."""

    metric_id: str
    name: str
    data_type: DataType
    metric_type: MetricType = MetricType.GAUGE
    description: str | None = None
    unit: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    retention_days: int = 90
    aggregation_interval: int = 60
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    created_at: datetime
    created_by: str


class MetricDeleted(StreamMessage, frozen=True, kw_only=True, tag="metric.deleted"):
    """A metric definition was deleted; its data points are kept."""

    metric_id: str
    name: str
    deleted_at: datetime
    deleted_by: str


# Every rule event carries ``points_seq``: the POINTS stream's last sequence when the gateway accepted the change.
# The change governs the POINTS messages after it and none before, whenever an engine evaluates them (live, behind
# or replaying after a crash): alert_worker/rules.py. None (events written before it existed, or by a writer that
# does not know POINTS): applied when the engine receives it, in order.


class AlertRuleCreated(StreamMessage, frozen=True, kw_only=True, tag="alert.rule.created"):
    """A rule was created (on subject telemetry.events.rule.<rule_id>)."""

    rule_id: str
    rule: RuleSpec
    at: datetime
    by: str
    points_seq: int | None = None


class AlertRuleUpdated(StreamMessage, frozen=True, kw_only=True, tag="alert.rule.updated"):
    """A rule's definition was replaced."""

    rule_id: str
    rule: RuleSpec
    at: datetime
    by: str
    points_seq: int | None = None


class AlertRuleEnabled(StreamMessage, frozen=True, kw_only=True, tag="alert.rule.enabled"):
    """A rule was enabled or disabled."""

    rule_id: str
    enabled: bool
    at: datetime
    by: str
    points_seq: int | None = None


class AlertRuleDeleted(StreamMessage, frozen=True, kw_only=True, tag="alert.rule.deleted"):
    """A rule was deleted; its open alerts are resolved by the engine."""

    rule_id: str
    at: datetime
    by: str
    points_seq: int | None = None


class AlertTriggered(StreamMessage, frozen=True, kw_only=True, tag="alert.triggered"):
    """An alert opened (on subject telemetry.events.alert.<alert_id>), by the alert engine."""

    alert_id: str
    rule_id: str
    rule_name: str
    device_id: str
    metric_name: str
    level: AlertLevel
    message: str
    current_value: Any = None
    threshold_value: Any = None
    kind: str = "threshold"  # or "no_data"
    triggered_at: datetime
    auto_resolve_at: datetime | None = None
    notification_channels: list[str] = []


class AlertAcknowledged(StreamMessage, frozen=True, kw_only=True, tag="alert.acknowledged"):
    """An operator acknowledged an alert."""

    alert_id: str
    at: datetime
    by: str
    note: str | None = None


class AlertResolved(StreamMessage, frozen=True, kw_only=True, tag="alert.resolved"):
    """An alert closed: by an operator, or by the system (auto-resolve, data resumed, rule off)."""

    alert_id: str
    rule_id: str
    device_id: str
    at: datetime
    by: str
    note: str | None = None


class ApiKeyCreated(StreamMessage, frozen=True, kw_only=True, tag="apikey.created"):
    """An API key was issued (on subject telemetry.events.apikey.<key_id>); only its SHA-256 digest travels."""

    key_id: str
    name: str
    scope: ApiKeyScope
    # Hex SHA-256 of the whole key; the key itself is shown once to whoever created it and kept nowhere.
    digest: str
    # An ingest key limited to these devices (empty: any device).
    devices: list[str] = []
    created_at: datetime
    created_by: str


class ApiKeyRevoked(StreamMessage, frozen=True, kw_only=True, tag="apikey.revoked"):
    """An API key was revoked; every gateway refuses it from the moment it applies this event."""

    key_id: str
    at: datetime
    by: str


RuleEvent = AlertRuleCreated | AlertRuleUpdated | AlertRuleEnabled | AlertRuleDeleted
AlertEvent = AlertTriggered | AlertAcknowledged | AlertResolved
MetricEvent = MetricDefined | MetricDeleted
ApiKeyEvent = ApiKeyCreated | ApiKeyRevoked
DomainEvent = MetricEvent | RuleEvent | AlertEvent | ApiKeyEvent
