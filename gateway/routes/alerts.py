"""E4: alerts. The alert engine opens (and auto-resolves) them; operators acknowledge and resolve them here.

An alert's events live on telemetry.events.alert.<alert_id>; the last one is its current status
(alert.triggered: active, alert.acknowledged: acknowledged, alert.resolved: resolved). Operator
writes are conditional on that last sequence, so an operator and the engine never both win.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, get, put
from litestar.params import Parameter

from gateway.auth.guard import principal_of
from gateway.body import decode, read_body
from gateway.deps import checked_name, request_id, state_of
from gateway.errors import bad_request, conflict, not_found, unprocessable
from gateway.integration_events import publish_integration_event
from gateway.publisher import SequenceConflictError
from gateway.state import GatewayState
from gateway.views.alerts import AlertFilters, get_alert, list_alerts
from gateway.views.metric_definitions import wait_applied
from telemetry_core.topology import EVENTS_STREAM, alert_subject
from telemetry_schemas.api.alerts import AlertList, AlertResponse, NoteRequest
from telemetry_schemas.codecs import alert_event_decoder, json_encoder
from telemetry_schemas.enums import AlertLevel, AlertStatus
from telemetry_schemas.events import AlertAcknowledged, AlertEvent, AlertResolved, AlertTriggered

PROJECTION = "alerts"
VISIBLE_WITHIN_S = 5.0
_TAGS = ["alerts"]
_BASE = "/api/v1/telemetry/alerts"
_note_decoder = msgspec.json.Decoder(NoteRequest)
log = structlog.get_logger()


class _History(msgspec.Struct, kw_only=True):
    """An alert's events so far and the sequence of the last one."""

    seq: int
    triggered: AlertTriggered
    acknowledged: AlertAcknowledged | None = None
    resolved: AlertResolved | None = None


async def _history(gw: GatewayState, alert_id: str) -> _History:
    """The alert as its subject tells it; 404 when the subject has no alert.triggered."""
    checked_name(alert_id, "alert_id")
    subject = alert_subject(alert_id)
    last = await gw.publisher.last_on_subject(EVENTS_STREAM, subject)
    if last is None:
        raise not_found(f"alert {alert_id!r} not found")
    seq, data = last
    event: AlertEvent = alert_event_decoder.decode(data)
    if isinstance(event, AlertTriggered):
        return _History(seq=seq, triggered=event)
    first = await gw.publisher.first_on_subject(EVENTS_STREAM, subject)
    opened = alert_event_decoder.decode(first[1]) if first is not None else None
    if not isinstance(opened, AlertTriggered):
        raise not_found(f"alert {alert_id!r} not found (its subject holds no alert.triggered)")
    if isinstance(event, AlertAcknowledged):
        return _History(seq=seq, triggered=opened, acknowledged=event)
    return _History(seq=seq, triggered=opened, resolved=event)


def _status(h: _History) -> AlertStatus:
    if h.resolved is not None:
        return AlertStatus.RESOLVED
    return AlertStatus.ACKNOWLEDGED if h.acknowledged is not None else AlertStatus.ACTIVE


def _response(h: _History) -> AlertResponse:
    t, ack, res = h.triggered, h.acknowledged, h.resolved
    return AlertResponse(
        alert_id=t.alert_id, rule_id=t.rule_id, rule_name=t.rule_name, device_id=t.device_id,
        metric_name=t.metric_name, level=t.level, status=_status(h), kind=t.kind, message=t.message,
        current_value=t.current_value, threshold_value=t.threshold_value, triggered_at=t.triggered_at,
        auto_resolve_at=t.auto_resolve_at,
        acknowledged_at=ack.at if ack else None, acknowledged_by=ack.by if ack else None,
        acknowledgement_note=ack.note if ack else None,
        resolved_at=res.at if res else None, resolved_by=res.by if res else None,
        resolution_note=res.note if res else None,
        notification_channels=list(t.notification_channels),
    )  # fmt: skip


async def _note(request: Request[Any, Any, Any], gw: GatewayState) -> str | None:
    data = await read_body(request, gw.settings.max_body_bytes)
    return decode(data, _note_decoder).note if data.strip() else None


async def _publish(gw: GatewayState, request: Request[Any, Any, Any], event: AlertEvent, seq: int) -> None:
    try:
        new_seq = await gw.publisher.publish_event(alert_subject(event.alert_id), event, seq, request_id(request))
    except SequenceConflictError:
        raise conflict(
            f"alert {event.alert_id} changed concurrently (e.g. resolved by the alert engine); read it and retry"
        ) from None
    if not await wait_applied(gw.pool, PROJECTION, EVENTS_STREAM, new_seq, VISIBLE_WITHIN_S):
        log.warning("alert_change_not_yet_visible", seq=new_seq, alert_id=event.alert_id)


@get(_BASE, tags=_TAGS, summary="List alerts (E4-US5)",
     description="Newest first (triggered_at, then alert_id). Filters: status, level, device_id, rule_id, and "
     "start_time / end_time on triggered_at (half-open [start_time, end_time)); they are echoed in `filters`. "
     "`count` is the number of alerts on this page; `total`, `active_count` and `critical_count` count every "
     "alert matching the filters (not just this page): `active_count` those with status active, "
     "`critical_count` those of level critical or emergency that are not resolved (active or acknowledged), "
     "i.e. the severe alerts that still need attention.")  # fmt: skip
async def list_all_alerts(
    request: Request[Any, Any, Any],
    status: AlertStatus | None = None,
    level: AlertLevel | None = None,
    device_id: str | None = None,
    rule_id: str | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0)] = 0,
) -> AlertList:
    """Read a page of the read model with its counts."""
    for name, value in (("device_id", device_id), ("rule_id", rule_id)):
        if value is not None:
            checked_name(value, name)
    for name, t in (("start_time", start_time), ("end_time", end_time)):
        if t is not None and t.tzinfo is None:
            raise bad_request(f"{name}: must be RFC 3339 with a zone, e.g. 2025-12-18T00:00:00Z")
    if start_time is not None and end_time is not None and end_time <= start_time:
        raise unprocessable("end_time: must be after start_time")
    filters = AlertFilters(
        status=status.value if status else None, level=level.value if level else None, device_id=device_id,
        rule_id=rule_id, start=start_time, end=end_time,
    )  # fmt: skip
    page = await list_alerts(state_of(request).pool, filters, limit=limit, offset=offset)
    given = {
        "status": filters.status, "level": filters.level, "device_id": device_id, "rule_id": rule_id,
        "start_time": request.query_params.get("start_time"), "end_time": request.query_params.get("end_time"),
    }  # fmt: skip
    return AlertList(
        alerts=page.alerts, count=len(page.alerts), total=page.total, active_count=page.active,
        critical_count=page.critical, filters={k: v for k, v in given.items() if v is not None}, limit=limit,
        offset=offset,
    )  # fmt: skip


@get(f"{_BASE}/{{alert_id:str}}", tags=_TAGS, summary="Get an alert (E4-US5)",
     description="404 when there is no such alert.")  # fmt: skip
async def get_one_alert(alert_id: str, request: Request[Any, Any, Any]) -> AlertResponse:
    """Read one alert; 404 when absent."""
    checked_name(alert_id, "alert_id")
    found = await get_alert(state_of(request).pool, alert_id)
    if found is None:
        raise not_found(f"alert {alert_id!r} not found")
    return found


@put(f"{_BASE}/{{alert_id:str}}/acknowledge", tags=_TAGS, summary="Acknowledge an alert (E4-US6)",
     description='Optional body {"note": "..."}. Only an active alert can be acknowledged: 409 when it is already '
     "acknowledged or resolved, or when it changed concurrently (e.g. the engine resolved it). 404 for an "
     "unknown alert. Returns the updated alert once it is readable.")  # fmt: skip
async def acknowledge_alert(alert_id: str, request: Request[Any, Any, Any]) -> AlertResponse:
    """Publish alert.acknowledged, conditional on the alert still being active."""
    gw = state_of(request)
    note = await _note(request, gw)
    history = await _history(gw, alert_id)
    status = _status(history)
    if status is AlertStatus.ACKNOWLEDGED:
        raise conflict(f"alert {alert_id} is already acknowledged")
    if status is AlertStatus.RESOLVED:
        raise conflict(f"alert {alert_id} is resolved")
    event = AlertAcknowledged(alert_id=alert_id, at=datetime.now(UTC), by=principal_of(request), note=note)
    await _publish(gw, request, event, history.seq)
    history.acknowledged = event
    return _response(history)


@put(f"{_BASE}/{{alert_id:str}}/resolve", tags=_TAGS, summary="Resolve an alert (E4-US6)",
     description='Optional body {"note": "..."}. An active or acknowledged alert becomes resolved, by the '
     "caller. 409 when it is already resolved or changed "
     "concurrently; 404 for an unknown alert. Publishes the platform event `alert.resolved`. Returns the "
     "updated alert once it is readable.")  # fmt: skip
async def resolve_alert(alert_id: str, request: Request[Any, Any, Any]) -> AlertResponse:
    """Publish alert.resolved, conditional on the alert not being resolved."""
    gw = state_of(request)
    note = await _note(request, gw)
    history = await _history(gw, alert_id)
    if history.resolved is not None:
        raise conflict(f"alert {alert_id} is already resolved")
    t = history.triggered
    event = AlertResolved(
        alert_id=alert_id, rule_id=t.rule_id, device_id=t.device_id, at=datetime.now(UTC), by=principal_of(request),
        note=note,
    )  # fmt: skip
    await _publish(gw, request, event, history.seq)
    await publish_integration_event(gw, "alert.resolved", json_encoder.encode(event))
    history.resolved = event
    return _response(history)


ROUTES = [list_all_alerts, get_one_alert, acknowledge_alert, resolve_alert]
