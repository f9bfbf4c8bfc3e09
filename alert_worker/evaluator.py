"""Feeds points, clock ticks and operator resolves into the state machines; collects transitions."""

import time
from collections.abc import Iterable

import structlog

from alert_worker.emitter import Emitted
from alert_worker.rules import Rule, RuleIndex
from telemetry_core.alerting import state_machine as sm
from telemetry_core.alerting.conditions import holds
from telemetry_core.alerting.targeting import targets
from telemetry_core.topology import slot_of, slot_of_points_subject
from telemetry_schemas.values import Point

Key = tuple[str, str]


def partition_of(device_id: str, partitions: int) -> int:
    """Stable device → partition: the device's POINTS slot (assigned by the server) modulo ``partitions``."""
    return slot_of(device_id) % partitions


def owns(points_subject: str, partition: int, partitions: int) -> bool:
    """Whether a stored POINTS message belongs to ``partition`` (by the slot its subject carries)."""
    return slot_of_points_subject(points_subject) % partitions == partition


class Evaluator:
    """Owns the machines of one device partition. Single-threaded: called from the engine loop only."""

    def __init__(self, rules: RuleIndex, machines: dict[Key, sm.Machine], lateness_s: float,
                 log: structlog.stdlib.BoundLogger) -> None:  # fmt: skip
        self.rules, self.machines, self.lateness_s, self.log = rules, machines, lateness_s, log
        self.changed: set[Key] = set()
        self._params_cache: dict[str, tuple[Rule, sm.Params]] = {}
        self.rule_errors = 0

    def _params(self, rule: Rule) -> sm.Params:
        # Rules are immutable values: a changed rule is a new Rule object, so the cache keys on identity.
        cached = self._params_cache.get(rule.rule_id)
        if cached is None or cached[0] is not rule:
            cached = self._params_cache[rule.rule_id] = (rule, sm.Params.of(rule.spec, self.lateness_s))
        return cached[1]

    @staticmethod
    def _essentials(m: sm.Machine) -> tuple[object, ...]:
        # What must survive a restart exactly. Bookkeeping such as newest_event moves on every point and
        # is saved with the next essential change (a restart replays points since the checkpoint anyway).
        return (m.phase, len(m.breaches), m.alert_id, m.cooldown_until, m.condition_holds, m.nodata_alert_id)

    def points(self, device_id: str, points: Iterable[tuple[str, Point]], now: float) -> list[Emitted]:
        """Evaluate ``(key, point)`` pairs of one device; key is unique per point (stream seq and index)."""
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

    def tick(self, now: float | None = None) -> list[Emitted]:
        """Time-driven transitions; rules disabled or deleted resolve their open alerts; deleted rules' machines go."""
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
            before = self._essentials(machine)
            transitions = sm.on_tick(machine, self._params(rule), ident=f"{rule_id}|{device_id}", now=now)
            if transitions or self._essentials(machine) != before:
                self.changed.add((rule_id, device_id))
            out.extend(Emitted(rule, device_id, t) for t in transitions)
        return out

    def operator_resolved(self, alert_id: str, rule_id: str, device_id: str, now: float) -> None:
        """An operator resolved an alert: its machine starts cooling down."""
        machine = self.machines.get((rule_id, device_id))
        rule = self.rules.rules.get(rule_id)
        if machine is not None and rule is not None:
            sm.on_manual_resolve(machine, self._params(rule), alert_id=alert_id, now=now)
            self.changed.add((rule_id, device_id))

    @property
    def late_points(self) -> int:
        """Points seen too late to evaluate, over every machine of the partition."""
        return sum(m.late_points for m in self.machines.values())
