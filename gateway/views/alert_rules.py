"""The alert_rules read model (list, get) and waiting for the alert engines to apply a rule change."""

import asyncio
import time
from datetime import datetime
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from gateway.views.rows import fetch_one, fetch_page
from telemetry_schemas.api.alerts import AlertRuleResponse
from telemetry_schemas.rules import RuleSpec

# An engine copy whose heartbeat is older than this is considered gone: writes do not wait for it.
ENGINE_LIVE_WITHIN_S = 10.0

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
_LIVE_ENGINES = """
SELECT partition, rules_seq FROM telemetry.alert_engines
WHERE heartbeat_at > now() - make_interval(secs => %s)
"""


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


async def wait_engines(pool: AsyncConnectionPool, seq: int, timeout_s: float) -> list[str]:
    """Poll until every live alert engine copy has applied rule events up to ``seq``, up to ``timeout_s``.

    Live means a heartbeat within ENGINE_LIVE_WITHIN_S (an engine that stops beating stops being waited
    for). Returns the partitions still behind at the deadline; [] when all caught up or none is live.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        async with pool.connection() as conn:
            cur = await conn.execute(_LIVE_ENGINES, (ENGINE_LIVE_WITHIN_S,), prepare=True)
            rows = await cur.fetchall()
        behind = sorted(str(partition) for partition, rules_seq in rows if rules_seq < seq)
        if not behind or time.monotonic() >= deadline:
            return behind
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
