"""The alert evaluator as it was before rules were indexed: every point against every rule of its metric.

The reference the indexed ``Evaluator.points`` must agree with exactly (tests/unit/test_alert_index_equivalence.py)
and the baseline of the evaluation benchmark (tests/bench/alert_engine.py). Ticks, operator resolves and
state are the product's; only ``points`` is the old loop, verbatim.
"""

from collections.abc import Iterable

from alert_worker.emitter import Emitted
from alert_worker.evaluator import Evaluator
from telemetry_core.alerting import state_machine as sm
from telemetry_core.alerting.conditions import holds
from telemetry_core.alerting.targeting import targets
from telemetry_schemas.values import Point


class NaiveEvaluator(Evaluator):
    """``points`` visits every enabled rule of the point's metric."""

    def points(self, device_id: str, points: Iterable[tuple[str, Point]], now: float) -> list[Emitted]:
        out: list[Emitted] = []
        for key, point in points:
            for rule in self.rules.by_metric.get(point.metric_name, ()):
                if not rule.enabled or not targets(rule.spec, device_id, point.tags):
                    continue
                try:
                    params = self._params(rule)
                    mkey = (rule.rule_id, device_id)
                    machine = self.machines.get(mkey)
                    if machine is None:
                        if params.no_data_for_s is None and not holds(params.condition, point.value, params.threshold):
                            continue  # a machine starts at its first breach (or first point, for no-data rules)
                        machine = self.machines[mkey] = sm.Machine()
                    before = self._essentials(machine)
                    ident, when = f"{rule.rule_id}|{device_id}", point.timestamp.timestamp()
                    transitions = sm.on_point(machine, params, ident=ident, key=key, value=point.value,
                                              event_time=when, now=now)  # fmt: skip
                    if params.no_data_for_s is not None or self._essentials(machine) != before:
                        self.changed.add(mkey)
                except Exception:  # a bad rule never stops the others
                    self.rule_errors += 1
                    self.log.exception("rule_failed", rule_id=rule.rule_id, device_id=device_id)
                    continue
                out.extend(Emitted(rule, device_id, t) for t in transitions)
        return out
