"""The shared steps and checks of the stateful tests that run the indexed evaluator beside the naive one.

Both machines (tests/unit/test_alert_index_equivalence.py, test_alert_open_parking.py) create, update, enable and
delete rules, resolve alerts as an operator, save, and compare both evaluators the same way; only the rules and
points they draw differ, so the steps are built around a strategy of specs (points and ticks stay in each test).
"""

from typing import Any

import structlog
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from alert_worker.emitter import Emitted
from alert_worker.evaluator import Evaluator
from alert_worker.rules import RuleBook
from telemetry_schemas.events import AlertRuleCreated, AlertRuleDeleted, AlertRuleEnabled, AlertRuleUpdated
from telemetry_schemas.rules import RuleSpec
from tests.support.alert_pair import T0, save_both
from tests.support.naive_evaluator import NaiveEvaluator

LATENESS_S = 120.0


def rule_event_steps(specs: st.SearchStrategy[RuleSpec], log: Any = None) -> type[RuleBasedStateMachine]:
    """A base machine: a rule book, both evaluators on it, and the four rule-event steps drawing from ``specs``."""
    logger = log if log is not None else structlog.get_logger()

    class RuleEventSteps(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.book = RuleBook()
            self.indexed = Evaluator(self.book, {}, LATENESS_S, logger)
            self.naive = NaiveEvaluator(self.book, {}, LATENESS_S, logger)
            self.seq, self.wall, self.event, self.serial = 0, 1_000_000.0, 1_000_000.0, 0

        def _rule_event(self, event_: Any) -> None:
            self.seq += 1
            self.book._apply(event_, self.seq)

        @property
        def ids(self) -> list[str]:
            return sorted(self.book.rules)

        @rule(spec=specs)
        def create(self, spec: RuleSpec) -> None:
            self.serial += 1
            self._rule_event(AlertRuleCreated(rule_id=f"rule{self.serial:03d}", rule=spec, at=T0, by="t"))

        @precondition(lambda self: self.book.rules)
        @rule(data=st.data(), spec=specs)
        def update(self, data: st.DataObject, spec: RuleSpec) -> None:
            rule_id = data.draw(st.sampled_from(self.ids))
            self._rule_event(AlertRuleUpdated(rule_id=rule_id, rule=spec, at=T0, by="t"))

        @precondition(lambda self: self.book.rules)
        @rule(data=st.data(), enabled=st.booleans())
        def enable(self, data: st.DataObject, enabled: bool) -> None:
            rule_id = data.draw(st.sampled_from(self.ids))
            self._rule_event(AlertRuleEnabled(rule_id=rule_id, enabled=enabled, at=T0, by="t"))

        @precondition(lambda self: self.book.rules)
        @rule(data=st.data())
        def delete(self, data: st.DataObject) -> None:
            self._rule_event(AlertRuleDeleted(rule_id=data.draw(st.sampled_from(self.ids)), at=T0, by="t"))

        @precondition(lambda self: any(m.alert_id or m.nodata_alert_id for m in self.naive.machines.values()))
        @rule(data=st.data())
        def operator_resolves(self, data: st.DataObject) -> None:
            open_ = sorted((m.alert_id or m.nodata_alert_id, r, d) for (r, d), m in self.naive.machines.items()
                           if m.alert_id or m.nodata_alert_id)  # fmt: skip
            alert_id, rule_id, device_id = data.draw(st.sampled_from(open_))
            assert alert_id is not None
            self.indexed.operator_resolved(alert_id, rule_id, device_id, self.wall)
            self.naive.operator_resolved(alert_id, rule_id, device_id, self.wall)

        @rule()
        def save(self) -> None:
            """What the engine does before saving the changed machines: they are written as the naive ones are."""
            save_both(self.indexed, self.naive)

        def _same(self, indexed: list[Emitted], naive: list[Emitted]) -> None:
            """Both evaluators emitted the same transitions, in the same order."""
            assert [(e.rule.rule_id, e.device_id, e.transition) for e in indexed] == [
                (e.rule.rule_id, e.device_id, e.transition) for e in naive
            ]

        @invariant()
        def same_state(self) -> None:
            # Parked (idle) machines hold their bookkeeping on their series until settled: compare them settled.
            assert self.indexed.snapshot() == self.naive.machines
            assert self.indexed.changed == self.naive.changed
            assert self.indexed.rule_errors == self.naive.rule_errors
            assert self.indexed.late_points == self.naive.late_points

    return RuleEventSteps
