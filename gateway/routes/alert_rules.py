"""E4: alert rules, event-sourced on telemetry.events.rule.<rule_id>; reads come from the read model."""

from typing import Annotated

from litestar import Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, Parameter
from psycopg_pool import AsyncConnectionPool

from gateway.commands.aggregate import CommandContext
from gateway.commands.alert_rules import AlertRuleCommands, check_rule
from gateway.deps import checked_name
from gateway.errors import not_found, unprocessable
from gateway.off_loop import OffLoop
from gateway.openapi import errors
from gateway.params import Identifier, OptionalIdentifier
from gateway.typed_body import JsonBody
from gateway.views.alert_rules import get_rule, list_rules, rule_response
from gateway.views.backtest import MAX_POINTS, TooManyPointsError, evaluate
from telemetry_core.settings import Settings
from telemetry_schemas.api.alerts import (
    AlertRuleList,
    AlertRuleResponse,
    BacktestRequest,
    BacktestResponse,
    EnableRequest,
    RuleDeletedResponse,
    RuleEnabledResponse,
)
from telemetry_schemas.enums import AlertLevel
from telemetry_schemas.fields import MAX_OFFSET
from telemetry_schemas.rules import RuleSpec

_TAGS = ["alert rules"]
_BASE = "/api/v1/telemetry/alerts/rules"

_APPLIED_DOC = (
    "Answers once the change is readable here and every live alert engine (heartbeat within 10 s) evaluates "
    "points with it: engines say so over NATS the moment they apply it (typically a few ms). An engine that "
    "is down or stuck holds the answer for at most 5 s; the change is stored either way. The change governs "
    "exactly the points accepted after it: an engine that is behind, or back after a restart, still evaluates "
    "each point under the rules in force when the point was accepted."
)
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


@post(_BASE, status_code=201, tags=_TAGS, summary="Create an alert rule (E4-US1)",
      dto=JsonBody[RuleSpec], return_dto=None,
      description="201 with the rule, its generated rule_id (rule_<hex>) and its statistics. " + _RULE_DOC +
      " " + _APPLIED_DOC)  # fmt: skip
async def create_rule(
    data: JSONBody[RuleSpec], rule_commands: NamedDependency[AlertRuleCommands], ctx: NamedDependency[CommandContext]
) -> AlertRuleResponse:
    """Create a rule."""
    event = await rule_commands.create(data, ctx)
    return rule_response(event.rule_id, data, created_at=event.at, updated_at=event.at, created_by=event.by)


@get(_BASE, tags=_TAGS, summary="List alert rules (E4-US2)",
     description="Ordered by name, then rule_id. `count` is the number on this page, `total` the number "
     "matching the filters (enabled, level, metric_name), which are echoed in `filters`.")  # fmt: skip
async def list_alert_rules(
    pool: NamedDependency[AsyncConnectionPool],
    enabled: FromQuery[bool | None] = None,
    level: FromQuery[AlertLevel | None] = None,
    metric_name: OptionalIdentifier = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
) -> AlertRuleList:
    """Read a page of the read model."""
    if metric_name is not None:
        checked_name(metric_name, "metric_name")
    rules, total = await list_rules(
        pool,
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


@get(f"{_BASE}/{{rule_id:str}}", tags=_TAGS, responses=errors(404), summary="Get an alert rule (E4-US3)",
     description="404 when there is no such rule (or it was deleted).")  # fmt: skip
async def get_alert_rule(rule_id: Identifier, pool: NamedDependency[AsyncConnectionPool]) -> AlertRuleResponse:
    """Read one rule; 404 when absent."""
    checked_name(rule_id, "rule_id")
    found = await get_rule(pool, rule_id)
    if found is None:
        raise not_found(f"alert rule {rule_id!r} not found")
    return found


@put(f"{_BASE}/{{rule_id:str}}", tags=_TAGS, responses=errors(404), summary="Replace an alert rule (E4-US4)",
     dto=JsonBody[RuleSpec], return_dto=None,
     description="The body replaces the whole rule (fields left out take their defaults, `enabled` included). "
     + _RULE_DOC + " 404 when there is no such rule; 409 when it changed concurrently. Open alerts keep the "
     "level and message they opened with. " + _APPLIED_DOC)  # fmt: skip
async def update_rule(
    rule_id: Identifier,
    data: JSONBody[RuleSpec],
    rule_commands: NamedDependency[AlertRuleCommands],
    ctx: NamedDependency[CommandContext],
    pool: NamedDependency[AsyncConnectionPool],
) -> AlertRuleResponse:
    """Replace the rule, conditional on the state it was read in."""
    checked_name(rule_id, "rule_id")
    done = await rule_commands.replace(rule_id, data, ctx)
    stored = await get_rule(pool, rule_id)  # for the trigger statistics, which the rule's events do not hold
    event = done.event
    if done.created is not None:
        created_at, created_by = done.created.at, done.created.by
    else:  # not expected: every rule subject starts with its creation
        created_at, created_by = (stored.created_at, stored.created_by) if stored else (event.at, event.by)
    return rule_response(
        rule_id, data, created_at=created_at, updated_at=event.at, created_by=created_by,
        total_triggers=stored.total_triggers if stored else 0,
        last_triggered=stored.last_triggered if stored else None,
    )  # fmt: skip


@put(f"{_BASE}/{{rule_id:str}}/enable", tags=_TAGS, summary="Enable or disable an alert rule (E4-US4)",
     responses=errors(404),
     dto=JsonBody[EnableRequest], return_dto=None,
     description='Body {"enabled": true|false}. Disabling resolves the rule\'s open alerts (by the alert engine). '
     "Asking for the state the rule is already in changes nothing and says so in `message`. 404 when there is "
     "no such rule; 409 when it changed concurrently. " + _APPLIED_DOC)  # fmt: skip
async def enable_rule(
    rule_id: Identifier,
    data: JSONBody[EnableRequest],
    rule_commands: NamedDependency[AlertRuleCommands],
    ctx: NamedDependency[CommandContext],
) -> RuleEnabledResponse:
    """Enable or disable the rule unless it is already in the asked-for state."""
    checked_name(rule_id, "rule_id")
    changed = await rule_commands.enable(rule_id, data.enabled, ctx)
    word = "enabled" if data.enabled else "disabled"
    message = f"alert rule {rule_id} {word}" if changed else f"alert rule {rule_id} is already {word}"
    return RuleEnabledResponse(success=True, rule_id=rule_id, enabled=data.enabled, message=message)


@delete(f"{_BASE}/{{rule_id:str}}", status_code=200, tags=_TAGS, summary="Delete an alert rule (E4-US4)",
        responses=errors(404),
        description="The rule's open alerts are resolved by the alert engine; past alerts are kept. 404 when "
        "there is no such rule; 409 when it changed concurrently. " + _APPLIED_DOC)  # fmt: skip
async def delete_rule(
    rule_id: Identifier, rule_commands: NamedDependency[AlertRuleCommands], ctx: NamedDependency[CommandContext]
) -> Response[RuleDeletedResponse]:
    """Delete the rule, conditional on the state it was read in."""
    checked_name(rule_id, "rule_id")
    await rule_commands.delete(rule_id, ctx)
    body = RuleDeletedResponse(
        success=True, rule_id=rule_id, message=f"alert rule {rule_id} deleted; its past alerts are kept"
    )
    return Response(body, status_code=200)


@post(f"{_BASE}/backtest", status_code=200, tags=_TAGS, summary="Backtest a rule over stored data",
      dto=JsonBody[BacktestRequest], return_dto=None,
      description="Evaluates `rule` (saved or not; `enabled` is ignored) over the stored points of its metric in "
      "[start_time, end_time), for the devices it targets (narrowed further by `device_ids` when given), with "
      "the same state machine as the alert engine, on the data's own clock: each point's timestamp is both its "
      "event time and 'now', and auto-resolve, cooldown and no-data timeouts fall due at their exact moment in "
      "between. Device groups and tags are read from each point's tags (tag `group` names the group). Answers "
      "which alerts would have opened and when they would have closed (resolved_at null: still open at "
      f"end_time). Publishes nothing. 422 when the range holds more than {MAX_POINTS} points (narrow it).")  # fmt: skip
async def backtest_rule(
    data: JSONBody[BacktestRequest], off_loop: NamedDependency[OffLoop], settings: NamedDependency[Settings]
) -> BacktestResponse:
    """Run the pure state machine over stored points, in a worker process (it may take seconds)."""
    check_rule(data.rule, "rule.")
    if data.end_time <= data.start_time:
        raise unprocessable("end_time: must be after start_time")
    database_url = settings.database_read_url or settings.require_servers()[1]  # a read: the replica's, if any
    try:
        return await off_loop.run(evaluate, database_url, data.rule, data.start_time, data.end_time, data.device_ids)
    except TooManyPointsError:
        raise unprocessable(
            f"start_time/end_time: more than {MAX_POINTS} points of metric {data.rule.metric_name!r} in this range "
            "for the targeted devices; a backtest evaluates at most that many: narrow the range or device_ids"
        ) from None


ROUTES = [create_rule, list_alert_rules, backtest_rule, get_alert_rule, update_rule, enable_rule, delete_rule]
