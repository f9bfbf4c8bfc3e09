"""In-memory index of alert rules, rebuilt from the rule events on every start.

When a change takes effect: a rule event carries ``points_seq``, the POINTS stream's last sequence when the gateway
accepted the change (telemetry_schemas/events.py). The book applies it once its engine has evaluated every POINTS
message up to that sequence (``reach``), so the change governs exactly the points accepted after it, however far
behind the engine is when the event arrives, and an engine replaying after a crash evaluates each point under the
rules it was evaluated under before. (Applied on arrival, a rule enabled while the engine was behind was applied to
points accepted while it was still disabled; and a replay after a crash evaluated old points under newer rules.)
Events wait in stream order: a change never overtakes an earlier one that still waits.
"""

from collections import deque
from dataclasses import dataclass
from datetime import datetime

import structlog
from msgspec.structs import replace
from nats.js import JetStreamContext

from telemetry_core.follower import Follower
from telemetry_core.topology import EVENTS_STREAM, RULE_EVENTS
from telemetry_schemas.codecs import rule_event_decoder
from telemetry_schemas.events import AlertRuleCreated, AlertRuleDeleted, AlertRuleEnabled, AlertRuleUpdated, RuleEvent
from telemetry_schemas.rules import RuleSpec


@dataclass(frozen=True)
class Rule:
    """A rule as the engine sees it."""

    rule_id: str
    spec: RuleSpec
    created_at: datetime

    @property
    def enabled(self) -> bool:
        """Whether the rule evaluates points."""
        return self.spec.enabled


class RuleBook:
    """rule_id → Rule, and metric → rules, from rule events applied in stream order (pure, no I/O).

    ``receive`` takes events as they arrive and ``reach`` applies them as the engine moves along POINTS (see the
    module's docstring); ``_apply`` applies one at once (tests and benchmarks that build a book by hand).

    ``version`` grows with every applied event and ``metric_versions[m]`` with every event that changed a
    rule of metric ``m`` (before or after): the evaluator recompiles its indexes of the metrics that moved.
    """

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.deleted: dict[str, Rule] = {}  # so their open alerts can still be resolved by name
        self.by_metric: dict[str, list[Rule]] = {}
        self.version = 0
        self.metric_versions: dict[str, int] = {}
        # The POINTS sequence up to which the engine has evaluated: changes made at or before it are in force.
        self.position = 0
        # Received events that take effect after ``position``, in stream order.
        self.waiting: deque[tuple[RuleEvent, int]] = deque()

    def receive(self, event: RuleEvent, seq: int) -> None:
        """A rule event from the stream: applied now when it takes effect at or before the position, else kept."""
        self.waiting.append((event, seq))
        self._apply_due()

    def reach(self, position: int) -> bool:
        """The engine has evaluated every POINTS message up to ``position``: apply the changes made by then.

        True when a change was applied (the caller's view of the rules, e.g. its watched metrics, is stale).
        """
        if position > self.position:
            self.position = position
        return bool(self.waiting) and self._apply_due()

    def waiting_until(self) -> int:
        """The POINTS sequence the waiting changes were made at (0 when none waits)."""
        return max((event.points_seq or 0 for event, _seq in self.waiting), default=0)

    def release_beyond(self, last_seq: int) -> bool:
        """Apply in order, as if reached, the waiting changes made at a sequence past POINTS' ``last_seq``.

        The gateway read a change's ``points_seq`` from POINTS before publishing it, so the stream always holds it,
        unless the stream was deleted and created again since (its sequences start over; `telemetry replay`): no
        message will ever reach such a change, and waiting for the new stream to grow past it would leave the rule
        out (or in) for as long. The position stays where it is, so later changes made on the new stream keep their
        meaning. True when a change was applied.
        """
        if not any((event.points_seq or 0) > last_seq for event, _seq in self.waiting):
            return False
        self.waiting = deque(
            (replace(event, points_seq=None), seq) if (event.points_seq or 0) > last_seq else (event, seq)
            for event, seq in self.waiting
        )
        return self._apply_due()

    def _apply_due(self) -> bool:
        applied = False
        while self.waiting:
            event, seq = self.waiting[0]
            if event.points_seq is not None and event.points_seq > self.position:
                break
            self.waiting.popleft()
            self._apply(event, seq)
            applied = True
        return applied

    def _apply(self, event: RuleEvent, _seq: int) -> None:
        before = self.rules.get(event.rule_id)
        match event:
            case AlertRuleCreated(rule_id=rule_id, rule=spec, at=at):
                self.rules[rule_id] = Rule(rule_id, spec, at)
            case AlertRuleUpdated(rule_id=rule_id, rule=spec):
                old = self.rules.get(rule_id)
                if old is not None:
                    self.rules[rule_id] = Rule(rule_id, spec, old.created_at)
            case AlertRuleEnabled(rule_id=rule_id, enabled=enabled):
                old = self.rules.get(rule_id)
                if old is not None:
                    self.rules[rule_id] = Rule(rule_id, replace(old.spec, enabled=enabled), old.created_at)
            case AlertRuleDeleted(rule_id=rule_id):
                if rule_id in self.rules:
                    self.deleted[rule_id] = self.rules.pop(rule_id)
        self.by_metric = {}
        for rule in self.rules.values():
            self.by_metric.setdefault(rule.spec.metric_name, []).append(rule)
        self.version += 1
        after = self.rules.get(event.rule_id)
        for touched in (before, after):
            if touched is not None:
                metric = touched.spec.metric_name
                self.metric_versions[metric] = self.metric_versions.get(metric, 0) + 1


class RuleIndex(RuleBook):
    """A RuleBook following telemetry.events.rule.> (rebuilt from the first event on every start)."""

    def __init__(self, js: JetStreamContext, log: structlog.stdlib.BoundLogger) -> None:
        super().__init__()
        self.follower = Follower(js, EVENTS_STREAM, RULE_EVENTS, rule_event_decoder.decode, self.receive, log)

    @property
    def applied_seq(self) -> int:
        """The last rule event received: every POINTS message after its ``points_seq`` is evaluated under it."""
        return self.follower.last_seq
