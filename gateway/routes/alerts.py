"""E4: alerts. The alert engine opens (and auto-resolves) them; operators acknowledge and resolve them here."""

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter
from psycopg_pool import AsyncConnectionPool

from gateway.commands.aggregate import CommandContext
from gateway.commands.alerts import AlertCommands, AlertHistory
from gateway.deps import checked_name
from gateway.errors import not_found, unprocessable
from gateway.openapi import OptionalBodyOperation, errors
from gateway.params import Identifier, OptionalEndTime, OptionalIdentifier, check_timestamps
from gateway.typed_body import JsonBody
from gateway.views.alerts import AlertFilters, get_alert, list_alerts
from telemetry_schemas.api.alerts import AlertList, AlertResponse, NoteRequest
from telemetry_schemas.enums import AlertLevel, AlertStatus
from telemetry_schemas.fields import MAX_OFFSET

_TAGS = ["alerts"]
_BASE = "/api/v1/telemetry/alerts"


def _response(h: AlertHistory) -> AlertResponse:
    t, ack, res = h.triggered, h.acknowledged, h.resolved
    return AlertResponse(
        alert_id=t.alert_id, rule_id=t.rule_id, rule_name=t.rule_name, device_id=t.device_id,
        metric_name=t.metric_name, level=t.level, status=h.status, kind=t.kind, message=t.message,
        current_value=t.current_value, threshold_value=t.threshold_value, triggered_at=t.triggered_at,
        auto_resolve_at=t.auto_resolve_at,
        acknowledged_at=ack.at if ack else None, acknowledged_by=ack.by if ack else None,
        acknowledgement_note=ack.note if ack else None,
        resolved_at=res.at if res else None, resolved_by=res.by if res else None,
        resolution_note=res.note if res else None,
        notification_channels=list(t.notification_channels),
    )  # fmt: skip


@get(_BASE, tags=_TAGS, summary="List alerts (E4-US5)",
     description="Newest first (triggered_at, then alert_id). Filters: status, level, device_id, rule_id, and "
     "start_time / end_time on triggered_at (half-open [start_time, end_time)); they are echoed in `filters`. "
     "`count` is the number of alerts on this page; `total`, `active_count` and `critical_count` count every "
     "alert matching the filters (not just this page): `active_count` those with status active, "
     "`critical_count` those of level critical or emergency that are not resolved (active or acknowledged), "
     "i.e. the severe alerts that still need attention.")  # fmt: skip
async def list_all_alerts(
    request: Request[Any, Any, Any],
    pool: NamedDependency[AsyncConnectionPool],
    status: FromQuery[AlertStatus | None] = None,
    level: FromQuery[AlertLevel | None] = None,
    device_id: OptionalIdentifier = None,
    rule_id: OptionalIdentifier = None,
    start_time: FromQuery[datetime | None] = None,
    end_time: OptionalEndTime = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
) -> AlertList:
    """Read a page of the read model with its counts."""
    for name, value in (("device_id", device_id), ("rule_id", rule_id)):
        if value is not None:
            checked_name(value, name)
    check_timestamps(request, "start_time", "end_time")
    if start_time is not None and end_time is not None and end_time <= start_time:
        raise unprocessable("end_time: must be after start_time")
    filters = AlertFilters(
        status=status.value if status else None, level=level.value if level else None, device_id=device_id,
        rule_id=rule_id, start=start_time, end=end_time,
    )  # fmt: skip
    page = await list_alerts(pool, filters, limit=limit, offset=offset)
    given = {
        "status": filters.status, "level": filters.level, "device_id": device_id, "rule_id": rule_id,
        "start_time": request.query_params.get("start_time"), "end_time": request.query_params.get("end_time"),
    }  # fmt: skip
    return AlertList(
        alerts=page.alerts, count=len(page.alerts), total=page.total, active_count=page.active,
        critical_count=page.critical, filters={k: v for k, v in given.items() if v is not None}, limit=limit,
        offset=offset,
    )  # fmt: skip


@get(f"{_BASE}/{{alert_id:str}}", tags=_TAGS, responses=errors(404), summary="Get an alert (E4-US5)",
     description="404 when there is no such alert.")  # fmt: skip
async def get_one_alert(alert_id: Identifier, pool: NamedDependency[AsyncConnectionPool]) -> AlertResponse:
    """Read one alert; 404 when absent."""
    checked_name(alert_id, "alert_id")
    found = await get_alert(pool, alert_id)
    if found is None:
        raise not_found(f"alert {alert_id!r} not found")
    return found


@put(f"{_BASE}/{{alert_id:str}}/acknowledge", tags=_TAGS, summary="Acknowledge an alert (E4-US6)",
     responses=errors(404),
     dto=JsonBody[NoteRequest], return_dto=None, operation_class=OptionalBodyOperation,
     description='Optional body {"note": "..."} (or {"acknowledgement_note": "..."}). Only an active alert can be '
     "acknowledged: 409 when it is already "
     "acknowledged or resolved, or when it changed concurrently (e.g. the engine resolved it). 404 for an "
     "unknown alert. Returns the updated alert once it is readable.")  # fmt: skip
async def acknowledge_alert(
    alert_id: Identifier,
    alert_commands: NamedDependency[AlertCommands],
    ctx: NamedDependency[CommandContext],
    data: JSONBody[NoteRequest | None] = None,
) -> AlertResponse:
    """Acknowledge the alert, conditional on it still being active."""
    checked_name(alert_id, "alert_id")
    return _response(await alert_commands.acknowledge(alert_id, data.acknowledgement() if data else None, ctx))


@put(f"{_BASE}/{{alert_id:str}}/resolve", tags=_TAGS, responses=errors(404), summary="Resolve an alert (E4-US6)",
     dto=JsonBody[NoteRequest], return_dto=None, operation_class=OptionalBodyOperation,
     description='Optional body {"note": "..."} (or {"resolution_note": "..."}). An active or acknowledged alert '
     "becomes resolved, by the "
     "caller. 409 when it is already resolved or changed "
     "concurrently; 404 for an unknown alert. Publishes the platform event `alert.resolved`. Returns the "
     "updated alert once it is readable.")  # fmt: skip
async def resolve_alert(
    alert_id: Identifier,
    alert_commands: NamedDependency[AlertCommands],
    ctx: NamedDependency[CommandContext],
    data: JSONBody[NoteRequest | None] = None,
) -> AlertResponse:
    """Resolve the alert, conditional on it not being resolved."""
    checked_name(alert_id, "alert_id")
    return _response(await alert_commands.resolve(alert_id, data.resolution() if data else None, ctx))


ROUTES = [list_all_alerts, get_one_alert, acknowledge_alert, resolve_alert]
