"""The alert_rules read model: list and get."""

from datetime import datetime
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from gateway.views.rows import fetch_one, fetch_page
from telemetry_schemas.api.alerts import AlertRuleResponse
from telemetry_schemas.rules import RuleSpec

_spec_decoder = msgspec.json.Decoder(RuleSpec)
# A rule (the alert-rules projection's table) with its trigger statistics (the alerts projection's).
_COLUMNS = """
r.rule_id, r.spec::text AS spec, r.created_at, r.updated_at, r.created_by,
coalesce(s.total_triggers, 0) AS total_triggers, s.last_triggered
"""
_FROM = "telemetry.alert_rules r LEFT JOIN telemetry.alert_rule_stats s ON s.rule_id = r.rule_id"
_GET = f"SELECT {_COLUMNS} FROM {_FROM} WHERE r.rule_id = %s"  # noqa: S608 - constant text
_WHERE = """
WHERE (%(enabled)s::boolean IS NULL OR enabled = %(enabled)s)
  AND (%(level)s::text IS NULL OR level = %(level)s)
  AND (%(metric_name)s::text IS NULL OR metric_name = %(metric_name)s)
"""
_LIST = f"""
SELECT {_COLUMNS}, count(*) OVER () AS total FROM {_FROM} {_WHERE}
ORDER BY r.name, r.rule_id LIMIT %(limit)s OFFSET %(offset)s
"""  # noqa: S608 - constant text
_COUNT = f"SELECT count(*) AS count FROM telemetry.alert_rules {_WHERE}"  # noqa: S608 - constant text


def rule_response(
    rule_id: str,
    spec: RuleSpec,
    *,
    created_at: datetime,
    updated_at: datetime,
    created_by: str,
    total_triggers: int = 0,
    last_triggered: datetime | None = None,
) -> AlertRuleResponse:
    """The API view of a rule: every RuleSpec field, the effective clear_threshold, and the statistics."""
    fields = msgspec.structs.asdict(spec)
    fields["clear_threshold"] = spec.threshold_value if spec.clear_threshold is None else spec.clear_threshold
    return AlertRuleResponse(
        rule_id=rule_id,
        created_at=created_at,
        updated_at=updated_at,
        created_by=created_by,
        total_triggers=total_triggers,
        last_triggered=last_triggered,
        **fields,
    )


def _response(row: dict[str, Any]) -> AlertRuleResponse:
    return rule_response(
        row["rule_id"],
        _spec_decoder.decode(row["spec"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        created_by=row["created_by"],
        total_triggers=int(row["total_triggers"]),
        last_triggered=row["last_triggered"],
    )


async def get_rule(pool: AsyncConnectionPool, rule_id: str) -> AlertRuleResponse | None:
    """One rule by id, or None."""
    row = await fetch_one(pool, _GET, (rule_id,))
    return None if row is None else _response(row)


async def list_rules(
    pool: AsyncConnectionPool,
    *,
    enabled: bool | None,
    level: str | None,
    metric_name: str | None,
    limit: int,
    offset: int,
) -> tuple[list[AlertRuleResponse], int]:
    """A page of rules ordered by name (then id), and how many match in all."""
    params = {"enabled": enabled, "level": level, "metric_name": metric_name, "limit": limit, "offset": offset}
    rows, total = await fetch_page(pool, _LIST, _COUNT, params)
    return [_response(r) for r in rows], total
