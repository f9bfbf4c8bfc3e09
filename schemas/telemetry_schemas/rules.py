"""An alert rule's definition, shared by the rule API body and the rule events."""

from typing import Annotated

import msgspec

from telemetry_schemas.enums import AlertLevel, Comparison
from telemetry_schemas.fields import DeviceId, MetricName
from telemetry_schemas.text import text_meta
from telemetry_schemas.values import MAX_SAFE_INT

# Integers are bounded like point values (compared as doubles); text follows the one text rule.
Threshold = (
    Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)] | float | bool | Annotated[str, text_meta(256)]
)
Name = Annotated[str, text_meta(200, min_length=1)]
ShortText = Annotated[str, text_meta(64)]
Description = Annotated[str, text_meta(1000)]


class RuleSpec(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """What a rule watches and when it fires; the bounds are the PRD's.

    Two additions:
    ``clear_threshold`` (hysteresis: an alert recovers only once the value no longer meets the
    condition against it; default = threshold) and ``no_data_for`` (seconds without a point from a
    targeted device before a "no data" alert opens; off by default).
    """

    name: Name
    metric_name: MetricName
    condition: Comparison
    threshold_value: Threshold
    description: Description | None = None
    evaluation_window: Annotated[int, msgspec.Meta(ge=60, le=3600)] = 300
    trigger_count: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    level: AlertLevel = AlertLevel.WARNING
    device_ids: Annotated[list[DeviceId], msgspec.Meta(max_length=10_000)] = []
    device_groups: Annotated[list[ShortText], msgspec.Meta(max_length=100)] = []
    device_tags: Annotated[dict[ShortText, Annotated[str, text_meta(256)]], msgspec.Meta(max_length=32)] = {}
    notification_channels: Annotated[list[ShortText], msgspec.Meta(max_length=32)] = []
    cooldown_minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 15
    auto_resolve: bool = True
    auto_resolve_timeout: Annotated[int, msgspec.Meta(ge=300, le=86_400)] = 3600
    enabled: bool = True
    tags: Annotated[list[ShortText], msgspec.Meta(max_length=32)] = []
    clear_threshold: Threshold | None = None
    no_data_for: Annotated[int, msgspec.Meta(ge=10, le=7 * 86_400)] | None = None
