"""E4: alert rules, event-sourced on telemetry.events.rule.<rule_id>; reads come from the read model."""

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, assert_never

import msgspec
import structlog
from litestar import Request, Response, delete, get, post, put
from litestar.params import Parameter

from gateway.auth.guard import principal_of
from gateway.body import decode, read_body
from gateway.deps import checked_name, request_id, state_of
from gateway.errors import conflict, not_found, unprocessable
from gateway.integration_events import publish_integration_event
from gateway.publisher import SequenceConflictError
from gateway.state import GatewayState
from gateway.views.alert_rules import get_rule, list_rules, rule_response, wait_engines
from gateway.views.backtest import MAX_POINTS, TooManyPointsError, run_backtest
from gateway.views.metric_definitions import wait_applied
from telemetry_core.alerting.conditions import threshold_problem
from telemetry_core.topology import EVENTS_STREAM, rule_subject
from telemetry_schemas.api.alerts import (
    AlertRuleList,
    AlertRuleResponse,
    BacktestRequest,
    BacktestResponse,
    EnableRequest,
    RuleDeletedResponse,
    RuleEnabledResponse,
)
from telemetry_schemas.codecs import json_encoder, rule_event_decoder
from telemetry_schemas.enums import AlertLevel, Comparison
from telemetry_schemas.events import AlertRuleCreated, AlertRuleDeleted, AlertRuleEnabled, AlertRuleUpdated, RuleEvent
from telemetry_schemas.rules import RuleSpec

PROJECTION = "alert_rules"
# How long a write waits for its event to reach the read model and every live alert engine.
VISIBLE_WITHIN_S = 5.0
_TAGS = ["alert rules"]
_BASE = "/api/v1/telemetry/alerts/rules"
_rule_decoder = msgspec.json.Decoder(RuleSpec)
_enable_decoder = msgspec.json.Decoder(EnableRequest)
_backtest_decoder = msgspec.json.Decoder(BacktestRequest)
# For ordered conditions, the clear threshold must lie on the safe side of the threshold (hysteresis).
_CLEAR_SIDE = {Comparison.GT: "<=", Comparison.GE: "<=", Comparison.LT: ">=", Comparison.LE: ">="}
log = structlog.get_logger()

_RULE_DOC = (
    "The body is a rule: name, metric_name, condition (>, <, >=, <=, ==, !=), threshold_value, and optionally "
    "description, evaluation_window (60-3600 s, default 300), trigger_count (1-100, default 1: breaches within "
    "the window that open an alert), level (info, warning, error, critical, emergency; default warning), "
    "device_ids / device_groups / device_tags (targets; empty = every device), notification_channels, "
    "cooldown_minutes (1-1440, default 15), auto_resolve (default true), auto_resolve_timeout (300-86400 s, "
    "default 3600), enabled (default true), tags, clear_threshold (hysteresis: an alert recovers once the value "
    "no longer meets the condition against it; only with >, <, >=, <= and a number on the safe side of the "
    "threshold; default and shown as the threshold), no_data_for (10-604800 s: open a no-data alert when a "
    "targeted device sends nothing for that long; default off). 422 names the field at fault."
)


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def rule_problem(rule: RuleSpec, where: str = "") -> str | None:
    """Why a rule's condition, threshold and clear threshold do not go together, or None."""
    problem = threshold_problem(rule.condition, rule.threshold_value)
    if problem is not None:
        return f"{where}threshold_value: {problem}"
    clear = rule.clear_threshold
    if clear is None:
        return None
    side = _CLEAR_SIDE.get(rule.condition)
    if side is None:
        return (
            f"{where}clear_threshold: only conditions >, <, >=, <= take a clear threshold, not {rule.condition.value}"
        )
    if not _number(clear):
        return f"{where}clear_threshold: must be a number, got {type(clear).__name__}"
    assert _number(rule.threshold_value)
    wrong = clear > rule.threshold_value if side == "<=" else clear < rule.threshold_value  # type: ignore[operator]
    if wrong:
        return (
            f"{where}clear_threshold: must be {side} threshold_value ({rule.threshold_value}) for condition "
            f"{rule.condition.value}, got {clear}"
        )
    return None


def _validate(rule: RuleSpec) -> None:
    problem = rule_problem(rule)
    if problem is not None:
        raise unprocessable(problem)


async def _current(gw: GatewayState, rule_id: str) -> tuple[int, RuleEvent | None]:
    """(last sequence on the rule's subject, its last event): the rule's true current state."""
    last = await gw.publisher.last_on_subject(EVENTS_STREAM, rule_subject(rule_id))
    if last is None:
        return 0, None
    seq, data = last
    return seq, rule_event_decoder.decode(data)


async def _existing(gw: GatewayState, rule_id: str) -> tuple[int, RuleEvent]:
    """The rule's current state; 404 when it was never created or is deleted."""
    checked_name(rule_id, "rule_id")
    seq, last = await _current(gw, rule_id)
    if last is None or isinstance(last, AlertRuleDeleted):
        raise not_found(f"alert rule {rule_id!r} not found")
    return seq, last


async def _make_visible(gw: GatewayState, seq: int) -> None:
    """Read-your-writes: wait (bounded, together) for the read model and every live alert engine."""
    applied, behind = await asyncio.gather(
        wait_applied(gw.pool, PROJECTION, EVENTS_STREAM, seq, VISIBLE_WITHIN_S),
        wait_engines(gw.pool, seq, VISIBLE_WITHIN_S),
    )
    if not applied or behind:
        # The event is durable; a reader or an engine is only slow (or down). Say so in the log.
        log.warning("rule_change_not_yet_visible", seq=seq, read_model=applied, engines_behind=behind)


async def _publish(gw: GatewayState, request: Request[Any, Any, Any], rule_id: str, event: RuleEvent, seq: int) -> int:
    try:
        new_seq = await gw.publisher.publish_event(rule_subject(rule_id), event, seq, request_id(request))
    except SequenceConflictError:
        raise conflict(f"alert rule {rule_id!r} changed concurrently; retry") from None
    await _make_visible(gw, new_seq)
    return new_seq


@post(_BASE, status_code=201, tags=_TAGS, summary="Create an alert rule (E4-US1)",
      description="201 with the rule, its generated rule_id (rule_<hex>) and its statistics. " + _RULE_DOC +
      " Returns once the rule is readable and applied by every live alert engine (bounded wait of 5 s; the rule "
      "is stored either way).")  # fmt: skip
async def create_rule(request: Request[Any, Any, Any]) -> AlertRuleResponse:
    """Publish alert.rule.created on a new subject (expected last subject sequence 0)."""
    gw = state_of(request)
    rule = decode(await read_body(request, gw.settings.max_body_bytes), _rule_decoder)
    _validate(rule)
    rule_id = "rule_" + secrets.token_hex(8)
    event = AlertRuleCreated(rule_id=rule_id, rule=rule, at=datetime.now(UTC), by=principal_of(request))
    await _publish(gw, request, rule_id, event, 0)
    await publish_integration_event(gw, "alert.rule.created", json_encoder.encode(event))
    return rule_response(rule_id, rule, created_at=event.at, updated_at=event.at, created_by=event.by)


@get(_BASE, tags=_TAGS, summary="List alert rules (E4-US2)",
     description="Ordered by name, then rule_id. `count` is the number on this page, `total` the number "
     "matching the filters (enabled, level, metric_name), which are echoed in `filters`.")  # fmt: skip
async def list_alert_rules(
    request: Request[Any, Any, Any],
    enabled: bool | None = None,
    level: AlertLevel | None = None,
    metric_name: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0)] = 0,
) -> AlertRuleList:
    """Read a page of the read model."""
    if metric_name is not None:
        checked_name(metric_name, "metric_name")
    rules, total = await list_rules(
        state_of(request).pool,
        enabled=enabled,
        level=level.value if level else None,
        metric_name=metric_name,
        limit=limit,
        offset=offset,
    )
    filters: dict[str, str | bool] = {}
    if enabled is not None:
        filters["enabled"] = enabled
    if level is not None:
        filters["level"] = level.value
    if metric_name is not None:
        filters["metric_name"] = metric_name
    return AlertRuleList(rules=rules, count=len(rules), total=total, limit=limit, offset=offset, filters=filters)


@get(f"{_BASE}/{{rule_id:str}}", tags=_TAGS, summary="Get an alert rule (E4-US3)",
     description="404 when there is no such rule (or it was deleted).")  # fmt: skip
async def get_alert_rule(rule_id: str, request: Request[Any, Any, Any]) -> AlertRuleResponse:
    """Read one rule; 404 when absent."""
    checked_name(rule_id, "rule_id")
    found = await get_rule(state_of(request).pool, rule_id)
    if found is None:
        raise not_found(f"alert rule {rule_id!r} not found")
    return found


@put(f"{_BASE}/{{rule_id:str}}", tags=_TAGS, summary="Replace an alert rule (E4-US4)",
     description="The body replaces the whole rule (fields left out take their defaults, `enabled` included). "
     + _RULE_DOC + " 404 when there is no such rule; 409 when it changed concurrently. Open alerts keep the "
     "level and message they opened with. Returns once the change is readable and applied by every live alert "
     "engine (bounded wait of 5 s).")  # fmt: skip
async def update_rule(rule_id: str, request: Request[Any, Any, Any]) -> AlertRuleResponse:
    """Publish alert.rule.updated, conditional on the state the rule was read in."""
    gw = state_of(request)
    rule = decode(await read_body(request, gw.settings.max_body_bytes), _rule_decoder)
    _validate(rule)
    seq, _ = await _existing(gw, rule_id)
    event = AlertRuleUpdated(rule_id=rule_id, rule=rule, at=datetime.now(UTC), by=principal_of(request))
    await _publish(gw, request, rule_id, event, seq)
    first = await gw.publisher.first_on_subject(EVENTS_STREAM, rule_subject(rule_id))
    created = rule_event_decoder.decode(first[1]) if first is not None else None
    stored = await get_rule(gw.pool, rule_id)
    if isinstance(created, AlertRuleCreated):
        created_at, created_by = created.at, created.by
    else:  # not expected: every rule subject starts with its creation
        created_at, created_by = (stored.created_at, stored.created_by) if stored else (event.at, event.by)
    return rule_response(
        rule_id, rule, created_at=created_at, updated_at=event.at, created_by=created_by,
        total_triggers=stored.total_triggers if stored else 0,
        last_triggered=stored.last_triggered if stored else None,
    )  # fmt: skip


@put(f"{_BASE}/{{rule_id:str}}/enable", tags=_TAGS, summary="Enable or disable an alert rule (E4-US4)",
     description='Body {"enabled": true|false}. Disabling resolves the rule\'s open alerts (by the alert engine). '
     "Asking for the state the rule is already in changes nothing and says so in `message`. 404 when there is "
     "no such rule; 409 when it changed concurrently.")  # fmt: skip
async def enable_rule(rule_id: str, request: Request[Any, Any, Any]) -> RuleEnabledResponse:
    """Publish alert.rule.enabled unless the rule is already in the asked-for state."""
    gw = state_of(request)
    body = decode(await read_body(request, gw.settings.max_body_bytes), _enable_decoder)
    seq, last = await _existing(gw, rule_id)
    match last:
        case AlertRuleEnabled():
            now_enabled = last.enabled
        case AlertRuleCreated() | AlertRuleUpdated():
            now_enabled = last.rule.enabled
        case AlertRuleDeleted():  # _existing answered 404 already
            raise not_found(f"alert rule {rule_id!r} not found")
        case _:
            assert_never(last)
    word = "enabled" if body.enabled else "disabled"
    if now_enabled == body.enabled:
        await _make_visible(gw, seq)
        return RuleEnabledResponse(
            success=True, rule_id=rule_id, enabled=body.enabled, message=f"alert rule {rule_id} is already {word}"
        )
    event = AlertRuleEnabled(rule_id=rule_id, enabled=body.enabled, at=datetime.now(UTC), by=principal_of(request))
    await _publish(gw, request, rule_id, event, seq)
    return RuleEnabledResponse(
        success=True, rule_id=rule_id, enabled=body.enabled, message=f"alert rule {rule_id} {word}"
    )


@delete(f"{_BASE}/{{rule_id:str}}", status_code=200, tags=_TAGS, summary="Delete an alert rule (E4-US4)",
        description="The rule's open alerts are resolved by the alert engine; past alerts are kept. 404 when "
        "there is no such rule; 409 when it changed concurrently.")  # fmt: skip
async def delete_rule(rule_id: str, request: Request[Any, Any, Any]) -> Response[RuleDeletedResponse]:
    """Publish alert.rule.deleted, conditional on the state the rule was read in."""
    gw = state_of(request)
    seq, _ = await _existing(gw, rule_id)
    event = AlertRuleDeleted(rule_id=rule_id, at=datetime.now(UTC), by=principal_of(request))
    await _publish(gw, request, rule_id, event, seq)
    body = RuleDeletedResponse(
        success=True, rule_id=rule_id, message=f"alert rule {rule_id} deleted; its past alerts are kept"
    )
    return Response(body, status_code=200)


@post(f"{_BASE}/backtest", status_code=200, tags=_TAGS, summary="Backtest a rule over stored data",
      description="Evaluates `rule` (saved or not; `enabled` is ignored) over the stored points of its metric in "
      "[start_time, end_time), for the devices it targets (narrowed further by `device_ids` when given), with "
      "the same state machine as the alert engine, on the data's own clock: each point's timestamp is both its "
      "event time and 'now', and auto-resolve, cooldown and no-data timeouts fall due at their exact moment in "
      "between. Device groups and tags are read from each point's tags (tag `group` names the group). Answers "
      "which alerts would have opened and when they would have closed (resolved_at null: still open at "
      f"end_time). Publishes nothing. 422 when the range holds more than {MAX_POINTS} points (narrow it).")  # fmt: skip
async def backtest_rule(request: Request[Any, Any, Any]) -> BacktestResponse:
    """Run the pure state machine over stored points."""
    gw = state_of(request)
    body = decode(await read_body(request, gw.settings.max_body_bytes), _backtest_decoder)
    problem = rule_problem(body.rule, "rule.")
    if problem is not None:
        raise unprocessable(problem)
    if body.end_time <= body.start_time:
        raise unprocessable("end_time: must be after start_time")
    try:
        return await run_backtest(gw.pool, body.rule, body.start_time, body.end_time, body.device_ids)
    except TooManyPointsError:
        raise unprocessable(
            f"start_time/end_time: more than {MAX_POINTS} points of metric {body.rule.metric_name!r} in this range "
            "for the targeted devices; a backtest evaluates at most that many: narrow the range or device_ids"
        ) from None


ROUTES = [create_rule, list_alert_rules, backtest_rule, get_alert_rule, update_rule, enable_rule, delete_rule]
