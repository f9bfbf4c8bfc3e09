"""The alert evaluator as it was before rules were indexed: every point against every rule of its metric.

The reference the indexed ``Evaluator`` must agree with exactly (tests/unit/test_alert_index_equivalence.py)
and the baseline of the evaluation benchmark (tests/bench/alert_engine.py). State and rule errors are the
product's; ``points`` (every rule of the metric, every machine of the device), ``tick`` (every machine),
``operator_resolved`` and ``late_points`` are the old code, verbatim.
"""

import time
from collections.abc import Iterable

from alert_worker.emitter import Emitted
from alert_worker.evaluator import Evaluator
from telemetry_core.alerting import state_machine as sm
from telemetry_core.alerting.conditions import holds
from telemetry_core.alerting.targeting import targets
from telemetry_schemas.values import Point


class NaiveEvaluator(Evaluator):
    """``points`` visits every enabled rule of the point's metric; ``tick`` every machine."""

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
                    self.visits += 1
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

    def tick(self, now: float | None = None) -> list[Emitted]:
        now = time.time() if now is None else now
        out: list[Emitted] = []
        for (rule_id, device_id), machine in list(self.machines.items()):
            rule = self.rules.rules.get(rule_id)
            if rule is None or not rule.enabled:
                former = rule or self.rules.deleted.get(rule_id)
                if former is not None and (machine.alert_id or machine.nodata_alert_id):
                    reason = "rule deleted" if rule is None else "rule disabled"
                    out.extend(Emitted(former, device_id, t) for t in sm.close_all(machine, reason, now))
                    self.changed.add((rule_id, device_id))
                if rule is None:  # deleted (ids are never reused): the machine goes, in the same save
                    del self.machines[(rule_id, device_id)]
                    self._params_cache.pop(rule_id, None)
                    self.changed.add((rule_id, device_id))  # a changed key with no machine is saved as a delete
                continue
            self.visits += 1
            before = self._essentials(machine)
            transitions = sm.on_tick(machine, self._params(rule), ident=f"{rule_id}|{device_id}", now=now)
            if transitions or self._essentials(machine) != before:
                self.changed.add((rule_id, device_id))
            out.extend(Emitted(rule, device_id, t) for t in transitions)
        return out

    def operator_resolved(self, alert_id: str, rule_id: str, device_id: str, now: float) -> None:
        machine = self.machines.get((rule_id, device_id))
        rule = self.rules.rules.get(rule_id)
        if machine is not None and rule is not None:
            sm.on_manual_resolve(machine, self._params(rule), alert_id=alert_id, now=now)
            self.changed.add((rule_id, device_id))

    def settle(self, keys: Iterable[tuple[str, str]]) -> None:
        return  # every machine is always up to date

    def snapshot(self) -> dict[tuple[str, str], sm.Machine]:
        return self.machines

    @property
    def late_points(self) -> int:
        return sum(m.late_points for m in self.machines.values())
