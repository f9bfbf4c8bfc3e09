"""Alert rule commands on ``telemetry.events.rule.<rule_id>``: create, replace, enable/disable, delete.

A write returns once the alert_rules read model and every live alert engine have applied it, so
enabling or disabling takes effect on the very next point. Each event carries POINTS' last sequence as the
write found it (``points_seq``): the change governs the points accepted after it, however far behind an engine
is (alert_worker/rules.py).
"""

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never

from gateway.commands.aggregate import Aggregate, CommandContext, Current
from gateway.errors import not_found, unprocessable
from gateway.integration_events import IntegrationEvents
from telemetry_core.alerting.conditions import threshold_problem
from telemetry_schemas.enums import Comparison
from telemetry_schemas.events import AlertRuleCreated, AlertRuleDeleted, AlertRuleEnabled, AlertRuleUpdated, RuleEvent
from telemetry_schemas.rules import RuleSpec

# The read model a write waits for (with the live alert engines).
PROJECTION = "alert_rules"
# For ordered conditions, the clear threshold must lie on the safe side of the threshold (hysteresis).
_CLEAR_SIDE = {Comparison.GT: "<=", Comparison.GE: "<=", Comparison.LT: ">=", Comparison.LE: ">="}


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


def check_rule(rule: RuleSpec, where: str = "") -> None:
    """422 naming the field when the rule's thresholds do not fit its condition."""
    problem = rule_problem(rule, where)
    if problem is not None:
        raise unprocessable(problem)


def existing(rule_id: str, current: Current[RuleEvent]) -> RuleEvent:
    """The rule's last event; 404 when it was never created or is deleted."""
    if current.last is None or isinstance(current.last, AlertRuleDeleted):
        raise not_found(f"alert rule {rule_id!r} not found")
    return current.last


def is_enabled(last: RuleEvent) -> bool:
    """Whether the rule is enabled after ``last``."""
    match last:
        case AlertRuleEnabled():
            return last.enabled
        case AlertRuleCreated() | AlertRuleUpdated():
            return last.rule.enabled
        case AlertRuleDeleted():
            return False
        case _:
            assert_never(last)


@dataclass(frozen=True)
class Replaced:
    """What a replace wrote, and the rule's creation (for created_at/created_by), when its subject has it."""

    event: AlertRuleUpdated
    created: AlertRuleCreated | None


class AlertRuleCommands:
    """The write side of alert rules."""

    def __init__(self, rules: Aggregate[RuleEvent], announce: IntegrationEvents,
                 points_position: Callable[[], Awaitable[int]]) -> None:  # fmt: skip
        self._rules = rules
        self._announce = announce
        self._points_position = points_position

    def _changed(self, rule_id: str) -> str:
        return f"alert rule {rule_id!r} changed concurrently; retry"

    async def create(self, rule: RuleSpec, ctx: CommandContext) -> AlertRuleCreated:
        """A new rule on a new subject (expected last subject sequence 0)."""
        check_rule(rule)
        rule_id = "rule_" + secrets.token_hex(8)
        event = AlertRuleCreated(rule_id=rule_id, rule=rule, at=datetime.now(UTC), by=ctx.principal,
                                 points_seq=await self._points_position())  # fmt: skip
        await self._rules.append(rule_id, event, 0, ctx, on_conflict=self._changed(rule_id))
        await self._announce.announce("alert.rule.created", event)
        return event

    async def replace(self, rule_id: str, rule: RuleSpec, ctx: CommandContext) -> Replaced:
        """The whole rule replaced, conditional on the state it was read in."""
        check_rule(rule)
        current = await self._rules.current(rule_id)
        existing(rule_id, current)
        event = AlertRuleUpdated(rule_id=rule_id, rule=rule, at=datetime.now(UTC), by=ctx.principal,
                                 points_seq=await self._points_position())  # fmt: skip
        await self._rules.append(rule_id, event, current.seq, ctx, on_conflict=self._changed(rule_id))
        created = await self._rules.first(rule_id)
        return Replaced(event, created if isinstance(created, AlertRuleCreated) else None)

    async def enable(self, rule_id: str, enabled: bool, ctx: CommandContext) -> bool:
        """Enable or disable; False when the rule already was in that state (nothing is written)."""
        current = await self._rules.current(rule_id)
        if is_enabled(existing(rule_id, current)) == enabled:
            await self._rules.visibility.wait(current.seq)  # what is there is what the caller will read
            return False
        event = AlertRuleEnabled(rule_id=rule_id, enabled=enabled, at=datetime.now(UTC), by=ctx.principal,
                                 points_seq=await self._points_position())  # fmt: skip
        await self._rules.append(rule_id, event, current.seq, ctx, on_conflict=self._changed(rule_id))
        return True

    async def delete(self, rule_id: str, ctx: CommandContext) -> AlertRuleDeleted:
        """Delete the rule (the engine resolves its open alerts; past alerts are kept)."""
        current = await self._rules.current(rule_id)
        existing(rule_id, current)
        event = AlertRuleDeleted(rule_id=rule_id, at=datetime.now(UTC), by=ctx.principal,
                                 points_seq=await self._points_position())  # fmt: skip
        await self._rules.append(rule_id, event, current.seq, ctx, on_conflict=self._changed(rule_id))
        return event
