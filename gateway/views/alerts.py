"""The alerts read model: list with counts, and get."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.views.rows import fetch_one
from telemetry_schemas.api.alerts import AlertResponse

_COLUMNS = (
    "alert_id, rule_id, rule_name, device_id, metric_name, level, status, kind, message, current_value, "
    "threshold_value, triggered_at, auto_resolve_at, acknowledged_at, acknowledged_by, acknowledgement_note, "
    "resolved_at, resolved_by, resolution_note, notification_channels"
)
_GET = f"SELECT {_COLUMNS} FROM telemetry.alerts WHERE alert_id = %s"  # noqa: S608 - constant columns
# Time filters are on triggered_at, half-open [start_time, end_time).
_WHERE = """
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(level)s::text IS NULL OR level = %(level)s)
  AND (%(device_id)s::text IS NULL OR device_id = %(device_id)s)
  AND (%(rule_id)s::text IS NULL OR rule_id = %(rule_id)s)
  AND (%(start)s::timestamptz IS NULL OR triggered_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR triggered_at < %(end)s)
"""
_PAGE = f"""
SELECT {_COLUMNS} FROM telemetry.alerts {_WHERE}
ORDER BY triggered_at DESC, alert_id DESC LIMIT %(limit)s OFFSET %(offset)s
"""  # noqa: S608 - constant text
# Counts over every matching alert, not just the page.
_COUNTS = f"""
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = 'active') AS active,
       count(*) FILTER (WHERE level IN ('critical', 'emergency') AND status <> 'resolved') AS critical
FROM telemetry.alerts {_WHERE}
"""  # noqa: S608 - constant text


@dataclass(frozen=True)
class AlertFilters:
    """What GET /alerts narrows by; None means any."""

    status: str | None = None
    level: str | None = None
    device_id: str | None = None
    rule_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class AlertPage:
    """A page of alerts and the counts over all matching ones."""

    alerts: list[AlertResponse]
    total: int
    active: int
    critical: int


def _response(row: dict[str, Any]) -> AlertResponse:
    row["notification_channels"] = row["notification_channels"] or []
    return AlertResponse(**row)


async def get_alert(pool: AsyncConnectionPool, alert_id: str) -> AlertResponse | None:
    """One alert by id, or None."""
    row = await fetch_one(pool, _GET, (alert_id,))
    return None if row is None else _response(row)


async def list_alerts(pool: AsyncConnectionPool, filters: AlertFilters, *, limit: int, offset: int) -> AlertPage:
    """Newest first (triggered_at, then alert id), with total, active and critical counts of all matching.

    Both statements are unnamed (prepare=False), planned with their values each time: with a value the
    `%(x)s IS NULL OR …` tests fold away (alerts_by_device for a device). Prepared (psycopg does it on a
    connection's 5th run), PostgreSQL may switch to a generic plan, which cannot know which tests hold: it
    reads every alert and filters (tests/integration/test_generic_plans.py).
    """
    params = {
        "status": filters.status, "level": filters.level, "device_id": filters.device_id,
        "rule_id": filters.rule_id, "start": filters.start, "end": filters.end, "limit": limit, "offset": offset,
    }  # fmt: skip
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_PAGE, params, prepare=False)
        rows = await cur.fetchall()
        await cur.execute(_COUNTS, params, prepare=False)
        counts = await cur.fetchone() or {"total": 0, "active": 0, "critical": 0}
    return AlertPage(
        alerts=[_response(r) for r in rows],
        total=int(counts["total"]),
        active=int(counts["active"]),
        critical=int(counts["critical"]),
    )
