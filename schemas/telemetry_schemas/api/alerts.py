"""Bodies of the E4 alerting endpoints: rules, alerts, and the rule backtest."""

from datetime import datetime
from typing import Annotated, Any

import msgspec

from telemetry_schemas.base import ApiBody
from telemetry_schemas.enums import AlertLevel, AlertStatus, Comparison
from telemetry_schemas.fields import DeviceId, EndTime, UtcTimestamp
from telemetry_schemas.rules import RuleSpec, Threshold
from telemetry_schemas.text import text_meta


class AlertRuleResponse(ApiBody):
    """E4-US1/US3 answer: the rule as it is now, with its trigger statistics.

    ``clear_threshold`` is the effective one (the threshold itself when the rule gives none).
    """

    rule_id: str
    name: str
    description: str | None
    metric_name: str
    condition: Comparison
    threshold_value: Threshold
    evaluation_window: int
    trigger_count: int
    level: AlertLevel
    device_ids: list[str]
    device_groups: list[str]
    device_tags: dict[str, str]
    notification_channels: list[str]
    cooldown_minutes: int
    auto_resolve: bool
    auto_resolve_timeout: int
    enabled: bool
    tags: list[str]
    clear_threshold: Threshold
    no_data_for: int | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    total_triggers: int
    last_triggered: datetime | None


class AlertRuleList(ApiBody):
    """E4-US2 answer: a page of rules, the total matching, and the filters used."""

    rules: list[AlertRuleResponse]
    count: int
    total: int
    limit: int
    offset: int
    filters: dict[str, str | bool]


class EnableRequest(ApiBody):
    """Body of PUT .../rules/{rule_id}/enable."""

    enabled: bool


class RuleEnabledResponse(ApiBody):
    """Answer of PUT .../rules/{rule_id}/enable."""

    success: bool
    rule_id: str
    enabled: bool
    message: str


class RuleDeletedResponse(ApiBody):
    """Answer of DELETE .../rules/{rule_id}."""

    success: bool
    rule_id: str
    message: str


class AlertResponse(ApiBody):
    """E4-US5/US6 answer: one alert and where it is in its lifecycle."""

    alert_id: str
    rule_id: str
    rule_name: str
    device_id: str
    metric_name: str
    level: AlertLevel
    status: AlertStatus
    kind: str
    message: str
    current_value: Any
    threshold_value: Any
    triggered_at: datetime
    auto_resolve_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    acknowledgement_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_note: str | None
    notification_channels: list[str]


class AlertList(ApiBody):
    """E4-US5 answer: a page of alerts (newest first) and counts over every matching alert."""

    alerts: list[AlertResponse]
    count: int
    total: int
    active_count: int
    critical_count: int
    filters: dict[str, str]
    limit: int
    offset: int


class NoteRequest(ApiBody):
    """Optional body of acknowledge and resolve: ``note``, or the name the alert shows it under.

    The response calls the notes ``acknowledgement_note`` and ``resolution_note``; a client sending those names
    back must not see its note dropped as an unknown field.
    """

    note: Annotated[str, text_meta(2000)] | None = None
    acknowledgement_note: Annotated[str, text_meta(2000)] | None = None
    resolution_note: Annotated[str, text_meta(2000)] | None = None

    def acknowledgement(self) -> str | None:
        """The note of an acknowledgement."""
        return self.note if self.note is not None else self.acknowledgement_note

    def resolution(self) -> str | None:
        """The note of a resolution."""
        return self.note if self.note is not None else self.resolution_note


class BacktestRequest(ApiBody):
    """A rule (saved or not) and a past range to evaluate it over; ``device_ids`` narrows its targets."""

    rule: RuleSpec
    start_time: UtcTimestamp
    end_time: EndTime
    device_ids: Annotated[list[DeviceId], msgspec.Meta(max_length=10_000)] | None = None


class BacktestAlert(ApiBody):
    """An alert the rule would have opened; resolved_at is null when it would still be open at end_time."""

    alert_id: str
    device_id: str
    kind: str
    opened_at: datetime
    value: Any
    resolved_at: datetime | None
    resolve_reason: str | None


class BacktestResponse(ApiBody):
    """What the rule would have done over [start_time, end_time)."""

    alerts: list[BacktestAlert]
    count: int
    points_evaluated: int
    devices_evaluated: int
    start_time: datetime
    end_time: datetime
