"""Platform (integration) events this service publishes on core NATS as ``<prefix>.<name>`` (FR-019).

``<prefix>`` is TELEMETRY_EVENT_PREFIX (default ``telemetry_service``). The payload of
``<prefix>.data.received`` is ``DataReceived``; the other subjects carry the domain event of the
same name unchanged (``MetricDefined``, ``AlertRuleCreated``, ``AlertTriggered``, ``AlertResolved``,
each with its ``type`` tag), so a consumer decodes them with the EVENTS contracts.
"""

from datetime import datetime

from telemetry_schemas.base import StreamMessage

DATA_RECEIVED = "data.received"
METRIC_DEFINED = "metric.defined"
ALERT_RULE_CREATED = "alert.rule.created"
ALERT_TRIGGERED = "alert.triggered"
ALERT_RESOLVED = "alert.resolved"


class DataReceived(StreamMessage, frozen=True, kw_only=True):
    """One accepted batch (one POINTS message) was stored; one per batch, not per point.

    Published on ``<prefix>.data.received``.
    """

    device_id: str
    metrics_count: int
    points_count: int
    timestamp: datetime


class DeviceDeleted(StreamMessage, frozen=True, kw_only=True):
    """Consumed (FR-020), default subject ``device_service.device.deleted``: a device was deleted.

    Its alert rule targets are removed (a rule naming only that device is disabled), its open alerts are
    resolved by ``system`` and its real-time subscriptions cancelled; its data is kept for history.
    Other fields are ignored.
    """

    device_id: str


class UserDeleted(StreamMessage, frozen=True, kw_only=True):
    """Consumed (FR-020), default subject ``account_service.user.deleted``: a user was deleted.

    The user is replaced by ``deleted-user`` wherever the read models name them (created_by,
    acknowledged_by, resolved_by). Other fields are ignored.
    """

    user_id: str


ANONYMOUS = "deleted-user"
