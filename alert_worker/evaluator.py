"""Feeds points, clock ticks and operator resolves into the state machines; collects transitions."""

import time
from collections.abc import Iterable

import structlog

from alert_worker.breach_index import MetricIndex, compile_metric
from alert_worker.emitter import Emitted
from alert_worker.rules import Rule, RuleBook
from telemetry_core.alerting import state_machine as sm
from telemetry_core.alerting.conditions import holds
from telemetry_core.alerting.targeting import matches_tags
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
    """Owns the machines of one device partition. Single-threaded: called from the engine loop only.

    A point visits only the rules that can act on it (alert_worker/breach_index.py: rules its value
    breaches, no-data rules) and the rules whose (rule, device) machine exists, in the order the
    naive loop over every rule of the metric would visit them, running the same per-rule code; so the
    transitions and machines are exactly the naive loop's (tests/unit/test_alert_index_equivalence.py).
    """

    def __init__(self, rules: RuleBook, machines: dict[Key, sm.Machine], lateness_s: float,
                 log: structlog.stdlib.BoundLogger) -> None:  # fmt: skip
        self.rules, self.machines, self.lateness_s, self.log = rules, machines, lateness_s, log
        self.changed: set[Key] = set()
        self._params_cache: dict[str, tuple[Rule, sm.Params, frozenset[str] | None]] = {}
        self.rule_errors = 0
        # metric → its compiled rule index, and the RuleBook versions they were compiled at.
        self._indexes: dict[str, MetricIndex] = {}
        self._version = -1
        self._metric_versions: dict[str, int] = {}
        self._rule_metric: dict[str, str] = {}
        # (device, metric of the rule) → rule ids with a machine for that device; how many machines it covers.
        self._machine_keys: dict[tuple[str, str], dict[str, None]] = {}
        self._indexed = -1

    def _params(self, rule: Rule) -> sm.Params:
        return self._compiled(rule)[1]

    def _compiled(self, rule: Rule) -> tuple[Rule, sm.Params, frozenset[str] | None]:
        # Rules are immutable values: a changed rule is a new Rule object, so the cache keys on identity.
        cached = self._params_cache.get(rule.rule_id)
        if cached is None or cached[0] is not rule:
            ids = frozenset(rule.spec.device_ids) if rule.spec.device_ids else None
            cached = self._params_cache[rule.rule_id] = (rule, sm.Params.of(rule.spec, self.lateness_s), ids)
        return cached

    @staticmethod
    def _essentials(m: sm.Machine) -> tuple[object, ...]:
        # What must survive a restart exactly. Bookkeeping such as newest_event moves on every point and
        # is saved with the next essential change (a restart replays points since the checkpoint anyway).
        return (m.phase, len(m.breaches), m.alert_id, m.cooldown_until, m.condition_holds, m.nodata_alert_id)

    # -- the indexes -------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Recompile the metrics whose rules changed since the last call; re-key machines if a rule moved metric."""
        book = self.rules
        if book.version == self._version and len(self.machines) == self._indexed:
            return
        moved = False
        if book.version != self._version:
            self._version = book.version
            for metric, version in book.metric_versions.items():
                if self._metric_versions.get(metric) == version:
                    continue
                self._metric_versions[metric] = version
                of_metric = book.by_metric.get(metric)
                if not of_metric:
                    self._indexes.pop(metric, None)
                    continue
                self._indexes[metric] = compile_metric(of_metric)
                for rule in of_metric:
                    if self._rule_metric.get(rule.rule_id, metric) != metric:
                        moved = True  # PUT changed the rule's metric: its machines now answer to the new one
                    self._rule_metric[rule.rule_id] = metric
        if moved or len(self.machines) != self._indexed:
            self._index_machines()

    def _index_machines(self) -> None:
        self._machine_keys = {}
        for rule_id, device_id in self.machines:
            rule = self.rules.rules.get(rule_id) or self.rules.deleted.get(rule_id)
            if rule is not None:
                self._machine_keys.setdefault((device_id, rule.spec.metric_name), {})[rule_id] = None
        self._indexed = len(self.machines)

    def _machine_added(self, rule: Rule, device_id: str) -> None:
        self._machine_keys.setdefault((device_id, rule.spec.metric_name), {})[rule.rule_id] = None
        self._indexed += 1

    def _machine_removed(self, rule: Rule | None, rule_id: str, device_id: str) -> None:
        if rule is not None:
            keys = self._machine_keys.get((device_id, rule.spec.metric_name))
            if keys is not None:
                keys.pop(rule_id, None)
        self._indexed -= 1

    # -- points ------------------------------------------------------------------------------------------

    def points(self, device_id: str, points: Iterable[tuple[str, Point]], now: float) -> list[Emitted]:
        """Evaluate ``(key, point)`` pairs of one device; key is unique per point (stream seq and index)."""
        self._refresh()
        out: list[Emitted] = []
        indexes, machine_keys, rules = self._indexes, self._machine_keys, self.rules.rules
        for key, point in points:
            metric = point.metric_name
            index = indexes.get(metric)
            if index is None:
                continue  # no rule watches the metric (a machine of a deleted rule is not visited)
            candidates = index.candidates(device_id, point.value)
            with_machine = machine_keys.get((device_id, metric))
            if with_machine:
                candidates.extend(r for rule_id in with_machine if (r := rules.get(rule_id)) is not None)
            if not candidates:
                continue
            if len(candidates) > 1:  # the naive loop's order: the metric's rules in creation order, once each
                rank = index.rank
                candidates = sorted({r.rule_id: r for r in candidates}.values(), key=lambda r: rank[r.rule_id])
            when = point.timestamp.timestamp()
            for rule in candidates:
                self._point_of_rule(rule, device_id, key, point, when, now, out)
        return out

    def _point_of_rule(self, rule: Rule, device_id: str, key: str, point: Point, when: float, now: float,
                       out: list[Emitted]) -> None:  # fmt: skip
        """One rule and one point: what the naive loop does for every rule of the point's metric."""
        if not rule.enabled:
            return
        try:
            _, params, ids = self._compiled(rule)
            if ids is not None and device_id not in ids:
                return
            spec = rule.spec
            if (spec.device_groups or spec.device_tags) and not matches_tags(spec, point.tags):
                return
            mkey = (rule.rule_id, device_id)
            machine = self.machines.get(mkey)
            if machine is None:
                if params.no_data_for_s is None and not holds(params.condition, point.value, params.threshold):
                    return  # a machine starts at its first breach (or first point, for no-data rules)
                machine = self.machines[mkey] = sm.Machine()
                self._machine_added(rule, device_id)
            no_data = params.no_data_for_s is not None
            before = None if no_data else self._essentials(machine)  # a no-data machine is saved on every point
            transitions = sm.on_point(machine, params, ident=f"{rule.rule_id}|{device_id}", key=key,
                                      value=point.value, event_time=when, now=now)  # fmt: skip
            if no_data or self._essentials(machine) != before:
                self.changed.add(mkey)
        except Exception:  # a bad rule never stops the others
            self.rule_errors += 1
            self.log.exception("rule_failed", rule_id=rule.rule_id, device_id=device_id)
            return
        if transitions:
            out.extend(Emitted(rule, device_id, t) for t in transitions)

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
                    self._machine_removed(former, rule_id, device_id)
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
