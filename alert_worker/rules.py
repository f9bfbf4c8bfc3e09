"""In-memory index of alert rules, rebuilt from the rule events on every start."""

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

    ``version`` grows with every applied event and ``metric_versions[m]`` with every event that changed a
    rule of metric ``m`` (before or after): the evaluator recompiles its indexes of the metrics that moved.
    """

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.deleted: dict[str, Rule] = {}  # so their open alerts can still be resolved by name
        self.by_metric: dict[str, list[Rule]] = {}
        self.version = 0
        self.metric_versions: dict[str, int] = {}

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
        self.follower = Follower(js, EVENTS_STREAM, RULE_EVENTS, rule_event_decoder.decode, self._apply, log)

    @property
    def applied_seq(self) -> int:
        """The last rule event applied."""
        return self.follower.last_seq
