"""Read model: current alert rules (E4), from alert.rule.* events."""

from typing import Any, assert_never

import msgspec
from psycopg import AsyncCursor
from psycopg.types.json import Json

from telemetry_core.topology import ALERT_RULES_PROJECTION, ConsumerSpec
from telemetry_schemas.codecs import json_encoder, rule_event_decoder
from telemetry_schemas.events import (
    AlertRuleCreated,
    AlertRuleDeleted,
    AlertRuleEnabled,
    AlertRuleUpdated,
    RuleEvent,
)
from telemetry_schemas.rules import RuleSpec

NAME = "alert_rules"
SPEC: ConsumerSpec = ALERT_RULES_PROJECTION
TABLES: tuple[str, ...] = ("telemetry.alert_rules",)

_spec_decoder = msgspec.json.Decoder(RuleSpec)
# A rule's trigger statistics are not here: they belong to the alerts projection (alert_rule_stats).
_CREATE = """
INSERT INTO telemetry.alert_rules (rule_id, name, metric_name, level, enabled, spec, created_at, updated_at,
    created_by)
VALUES (%(rule_id)s, %(name)s, %(metric_name)s, %(level)s, %(enabled)s, %(spec)s, %(at)s, %(at)s, %(by)s)
ON CONFLICT (rule_id) DO NOTHING
"""
_UPDATE = """
UPDATE telemetry.alert_rules SET name = %(name)s, metric_name = %(metric_name)s, level = %(level)s,
    enabled = %(enabled)s, spec = %(spec)s, updated_at = %(at)s
WHERE rule_id = %(rule_id)s
"""
# The spec is re-encoded from the decoded RuleSpec (not patched as jsonb, which would rewrite numbers).
_SPEC = "SELECT spec::text FROM telemetry.alert_rules WHERE rule_id = %s FOR UPDATE"
_ENABLE = """
UPDATE telemetry.alert_rules SET enabled = %(enabled)s, spec = %(spec)s, updated_at = %(at)s
WHERE rule_id = %(rule_id)s
"""
_DELETE = "DELETE FROM telemetry.alert_rules WHERE rule_id = %s"


def decode(data: bytes) -> RuleEvent:
    """Decode a rule event."""
    return rule_event_decoder.decode(data)


def _json(spec: RuleSpec) -> Json:
    return Json(spec, dumps=lambda obj: json_encoder.encode(obj).decode())


def _row(event: AlertRuleCreated | AlertRuleUpdated) -> dict[str, Any]:
    rule = event.rule
    return {
        "rule_id": event.rule_id,
        "name": rule.name,
        "metric_name": rule.metric_name,
        "level": rule.level.value,
        "enabled": rule.enabled,
        "spec": _json(rule),
        "at": event.at,
        "by": event.by,
    }


async def apply(cur: AsyncCursor[Any], messages: list[RuleEvent]) -> None:
    """Apply events in stream order."""
    for event in messages:
        match event:
            case AlertRuleCreated():
                await cur.execute(_CREATE, _row(event))
            case AlertRuleUpdated():
                await cur.execute(_UPDATE, _row(event))
            case AlertRuleEnabled():
                await cur.execute(_SPEC, (event.rule_id,))
                row = await cur.fetchone()
                if row is not None:
                    spec = msgspec.structs.replace(_spec_decoder.decode(row[0]), enabled=event.enabled)
                    params = {"rule_id": event.rule_id, "enabled": event.enabled, "spec": _json(spec), "at": event.at}
                    await cur.execute(_ENABLE, params)
            case AlertRuleDeleted():
                await cur.execute(_DELETE, (event.rule_id,))
            case _:
                assert_never(event)
