"""Feeds points, clock ticks and operator resolves into the state machines; collects transitions."""

import math
import time
from collections.abc import Container, Iterable

import msgspec
import structlog

from alert_worker.breach_index import MetricIndex, compile_metric
from alert_worker.due_schedule import EARLY_S, DueSchedule, deadline
from alert_worker.emitter import Emitted
from alert_worker.rules import Rule, RuleBook
from alert_worker.series import Levels, Series, levels_of, open_quiet, quiet
from telemetry_core.alerting import state_machine as sm
from telemetry_core.alerting.conditions import holds
from telemetry_core.alerting.targeting import matches_tags
from telemetry_core.topology import slot_of, slot_of_points_subject
from telemetry_schemas.values import Point

Key = tuple[str, str]  # (rule id, device id): one machine
SeriesKey = tuple[str, str]  # (device id, metric)
# Integers this large may overflow float() in ``holds`` (== and !=): every machine of the series meets such a
# point, as in the naive loop, so that each counts its rule error.
_BIG = 2**1000
# Entries a series' value stacks may hold before its open machines are settled and the stacks start afresh
# (random values keep a few dozen; a steady climb or fall would otherwise grow them without end).
STACK_CAP = 2048
Compiled = tuple[Rule, sm.Params, frozenset[str] | None, Levels | None]


class Changed(set[Key]):
    """The keys of machines to save at the next commit; ``generation`` counts how often it was cleared.

    Open machines park only while their key is in here (alert_worker/series.py): a clear must reach them.
    """

    generation = 0

    def clear(self) -> None:
        """Empty the set (the engine saved its machines)."""
        self.generation += 1
        super().clear()


def partition_of(device_id: str, partitions: int) -> int:
    """Stable device → partition: the device's POINTS slot (assigned by the server) modulo ``partitions``."""
    return slot_of(device_id) % partitions


def owns(points_subject: str, partition: int, partitions: int) -> bool:
    """Whether a stored POINTS message belongs to ``partition`` (by the slot its subject carries)."""
    return slot_of_points_subject(points_subject) % partitions == partition


class Evaluator:
    """Owns the machines of one device partition. Single-threaded: called from the engine loop only.

    A point costs O(log rules + rules it may concern + machines of its (metric, device) that are not idle):

    * rules: only those its value may breach and the no-data rules (alert_worker/breach_index.py);
    * machines: only the *active* ones — pending, open, cooling down, of no-data or tag-filtered rules, or
      not yet level with the series. An idle machine ("normal, nothing pending") is parked on its
      (metric, device) ``Series`` (alert_worker/series.py), which keeps the newest event time once for all of
      them; a point that may breach its rule wakes it (settled first, so it is exactly as if it had seen
      every point), and it parks again once idle.

    Candidates run the very same per-rule code in the naive loop's order (the metric's rules in creation
    order), so the transitions, machines (once settled) and changed keys are exactly the naive loop's
    (tests/unit/test_alert_index_equivalence.py). A clock tick visits only machines with something due
    (alert_worker/due_schedule.py) and those of rules changed since the last tick.
    Machines of parked rules hold stale bookkeeping until settled: ``settle`` (the engine calls it on the
    changed machines before saving them), ``snapshot`` and ``late_points`` account for it.
    """

    def __init__(self, rules: RuleBook, machines: dict[Key, sm.Machine], lateness_s: float,
                 log: structlog.stdlib.BoundLogger) -> None:  # fmt: skip
        self.rules, self.machines, self.lateness_s, self.log = rules, machines, lateness_s, log
        self.changed: Changed = Changed()
        self._params_cache: dict[str, Compiled] = {}
        self.rule_errors = 0
        # Machines run through the state machine by points and ticks (tests count them: idle ones never are).
        self.visits = 0
        # metric → its compiled rule index, and the RuleBook versions they were compiled at.
        self._indexes: dict[str, MetricIndex] = {}
        self._version = -1
        self._metric_versions: dict[str, int] = {}
        self._rule_objects: dict[str, Rule] = {}  # the Rule each rule's machines are filed under
        # Where each machine is: active (visited by every point of its series) or parked on its Series, under
        # the (device, metric of its rule); machines of disabled or deleted rules, or not targeting their
        # device by id, are in neither (points do not visit them).
        self._series: dict[SeriesKey, Series] = {}
        self._active: dict[SeriesKey, dict[str, None]] = {}
        self._filed: dict[Key, SeriesKey] = {}
        self._by_rule: dict[str, dict[str, None]] = {}  # rule id → devices with a machine
        self._order: dict[Key, int] = {}  # insertion order of ``machines``: ticks emit in it
        self._serial = 0
        self._schedule = DueSchedule()
        self._attention: set[Key] = set()  # visited by the next tick whatever their deadline
        self._count = -1
        self._index_machines()

    def _params(self, rule: Rule) -> sm.Params:
        return self._compiled(rule)[1]

    def _compiled(self, rule: Rule) -> Compiled:
        # Rules are immutable values: a changed rule is a new Rule object, so the cache keys on identity.
        cached = self._params_cache.get(rule.rule_id)
        if cached is None or cached[0] is not rule:
            ids = frozenset(rule.spec.device_ids) if rule.spec.device_ids else None
            p = sm.Params.of(rule.spec, self.lateness_s)
            # No-data machines stay out of open parking: a tick may open their no-data alert at any time.
            levels = None if p.no_data_for_s is not None else levels_of(p.condition, p.threshold, p.clear_threshold)
            cached = self._params_cache[rule.rule_id] = (rule, p, ids, levels)
        return cached

    @staticmethod
    def _essentials(m: sm.Machine) -> tuple[object, ...]:
        # What must survive a restart exactly. Bookkeeping such as newest_event moves on every point and
        # is saved with the next essential change (a restart replays points since the checkpoint anyway).
        return (m.phase, len(m.breaches), m.alert_id, m.cooldown_until, m.condition_holds, m.nodata_alert_id)

    # -- the indexes -------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Recompile the metrics whose rules changed since the last call; re-file the machines of changed rules."""
        book = self.rules
        if len(self.machines) != self._count:  # machines added or removed behind the evaluator's back
            self._index_machines()
        if book.version == self._version:
            return
        self._version = book.version
        for metric, version in book.metric_versions.items():
            if self._metric_versions.get(metric) == version:
                continue
            self._metric_versions[metric] = version
            of_metric = book.by_metric.get(metric)
            if of_metric:
                self._indexes[metric] = compile_metric(of_metric)
            else:
                self._indexes.pop(metric, None)
        for rule_id in self._rule_objects.keys() | book.rules.keys():
            rule = book.rules.get(rule_id)
            if rule is self._rule_objects.get(rule_id):
                continue
            if rule is None:
                del self._rule_objects[rule_id]
            else:
                self._rule_objects[rule_id] = rule
            # Enabled, disabled, deleted, or a new spec (threshold, timeouts, targets, even the metric): its
            # machines are settled, filed again, and looked at by the next tick.
            for device_id in self._by_rule.get(rule_id, ()):
                self._refile((rule_id, device_id))
                self._attention.add((rule_id, device_id))

    def _index_machines(self) -> None:
        """File every machine afresh (at start, or if ``machines`` changed from outside)."""
        for (device_id, _), series in self._series.items():
            for rule_id in series.parked:
                if (m := self.machines.get((rule_id, device_id))) is not None:
                    series.settle(m, rule_id)
            series.parked.clear()
            series.nodata.clear()
            series.opened.clear()
            series.stacks = None
            series.due = math.inf
        self._active, self._filed, self._by_rule, self._order = {}, {}, {}, {}
        self._schedule = DueSchedule()
        self._rule_objects = dict(self.rules.rules)
        for n, key in enumerate(self.machines):
            self._order[key] = n
            self._by_rule.setdefault(key[0], {})[key[1]] = None
            self._refile(key)
        self._serial = self._count = len(self.machines)
        self._attention = set(self.machines)  # the first tick looks at every machine once

    def _unfile(self, key: Key) -> None:
        skey = self._filed.pop(key, None)
        if skey is None:
            return
        series = self._series.get(skey)
        if series is not None and key[0] in series.parked:
            series.unpark(key, self.machines[key])
        elif (active := self._active.get(skey)) is not None:
            active.pop(key[0], None)

    def _refile(self, key: Key) -> None:
        """Settle the machine and file it as active under its rule's metric, if points of its device reach it."""
        self._unfile(key)
        rule_id, device_id = key
        rule = self.rules.rules.get(rule_id)
        if rule is None or not rule.enabled or (rule.spec.device_ids and device_id not in rule.spec.device_ids):
            return
        skey = (device_id, rule.spec.metric_name)
        self._active.setdefault(skey, {})[rule_id] = None
        self._filed[key] = skey
        if skey not in self._series:
            # Kept from the first machine of the (device, metric) on: a machine parks once level with it.
            self._series[skey] = Series()

    def _machine_added(self, rule: Rule, device_id: str) -> None:
        key = (rule.rule_id, device_id)
        self._order[key] = self._serial
        self._serial += 1
        self._count += 1
        self._by_rule.setdefault(rule.rule_id, {})[device_id] = None
        self._refile(key)

    def _machine_removed(self, key: Key) -> None:
        self._unfile(key)
        del self.machines[key]
        self._count -= 1
        devices = self._by_rule.get(key[0])
        if devices is not None:
            devices.pop(key[1], None)
            if not devices:
                del self._by_rule[key[0]]
        self._order.pop(key, None)
        self._schedule.drop(key)

    # -- points ------------------------------------------------------------------------------------------

    def watched_metrics(self) -> Container[str]:
        """The metrics some enabled rule watches: ``points`` skips every point of any other metric."""
        self._refresh()
        return self._indexes.keys()

    def points(self, device_id: str, points: Iterable[tuple[str, Point]], now: float) -> list[Emitted]:
        """Evaluate ``(key, point)`` pairs of one device; key is unique per point (stream seq and index)."""
        self._refresh()
        out: list[Emitted] = []
        indexes, active_of, series_of, rules = self._indexes, self._active, self._series, self.rules.rules
        lateness_s = self.lateness_s
        for key, point in points:
            metric = point.metric_name
            index = indexes.get(metric)
            if index is None:
                continue  # no rule watches the metric (a machine of a deleted rule is not visited)
            value = point.value
            candidates = index.candidates(device_id, value)
            skey = (device_id, metric)
            series = series_of.get(skey)  # None while no machine of the (device, metric) exists
            when = None
            if series is not None:
                if series.parked:
                    candidates = self._wake_for(series, skey, index, candidates, value, now)
                when = point.timestamp.timestamp()
                if series.see(when, value, now, lateness_s) > STACK_CAP:  # for every machine still parked
                    self._compact(series, device_id)
                with_machine = active_of.get(skey)
                if with_machine:
                    candidates.extend([rules[rule_id] for rule_id in with_machine])
            if not candidates:
                continue
            if when is None:
                when = point.timestamp.timestamp()
            if len(candidates) > 1:  # the naive loop's order: the metric's rules in creation order, once each
                rank = index.rank
                candidates = sorted({r.rule_id: r for r in candidates}.values(), key=lambda r: rank[r.rule_id])
            for rule in candidates:
                self._point_of_rule(rule, device_id, key, point, when, now, out, series)
        return out

    def _wake_for(self, series: Series, skey: SeriesKey, index: MetricIndex, candidates: list[Rule], value: object,
                  now: float) -> list[Rule]:  # fmt: skip
        """Wake the parked machines a point concerns, as they are before it; the candidates still to visit."""
        parked, opened, device_id = series.parked, series.opened, skey[0]
        if opened and series.generation != self.changed.generation:
            # The engine saved (and cleared ``changed``): open machines go back to the loop until they change.
            for rule_id in list(opened):
                self._wake(series, skey, rule_id, device_id)
        if now >= series.due:  # ... whose auto-resolve or cooldown end the point would bring about
            for rule_id in series.overdue(now):
                self._wake(series, skey, rule_id, device_id)
        if type(value) is int and not -_BIG < value < _BIG:
            for rule_id in list(parked):
                self._wake(series, skey, rule_id, device_id)
        for rule in candidates:  # ... whose rule the value may breach (no-data rules: below), unless open
            if rule.rule_id in parked and rule.spec.no_data_for is None and rule.rule_id not in opened:
                self._wake(series, skey, rule.rule_id, device_id)
        if index.no_data is not None:  # a no-data rule is a candidate of every point: woken if breached
            for rule in index.no_data.candidates(device_id, value):
                if rule.rule_id in parked:
                    self._wake(series, skey, rule.rule_id, device_id)
        if series.nodata:
            self.changed.update(series.nodata)  # a no-data machine is saved after every point
        return [rule for rule in candidates if rule.rule_id not in parked] if parked else candidates

    def _parked_on(self, key: Key) -> tuple[SeriesKey, Series] | None:
        """The series the machine of ``key`` is parked on, if it is."""
        skey = self._filed.get(key)
        series = None if skey is None else self._series.get(skey)
        return None if series is None or key[0] not in series.parked else (skey, series)  # type: ignore[return-value]

    def _compact(self, series: Series, device_id: str) -> None:
        """Settle the series' open machines (they stay parked) and start its value stacks afresh."""
        for rule_id in series.opened:
            series.catch_up(rule_id, self.machines[(rule_id, device_id)])
        series.restack()

    def _park(self, series: Series, skey: SeriesKey, rule_id: str, machine: sm.Machine, params: sm.Params,
              levels: Levels | None) -> bool:  # fmt: skip
        """Park a machine just visited and level with its series; whether it parked.

        It parks if a point would do to it only what the series does (quiet), or what the series can tell
        (open, while it is to be saved at the next commit anyway).
        """
        mkey = (rule_id, skey[0])
        if quiet(machine):
            no_data = mkey if params.no_data_for_s is not None else None
            series.park(rule_id, deadline(machine, params, with_no_data=False), no_data)
            return True
        if levels is None or mkey not in self.changed or not open_quiet(machine):
            return False
        generation = self.changed.generation
        if series.opened and series.generation != generation:  # parked before a save: back to the loop
            for other in list(series.opened):
                self._wake(series, skey, other, skey[0])
        series.generation = generation
        due = math.inf
        if params.auto_resolve and machine.last_breach_wall is not None:
            # No earlier than a point or tick could resolve it: its last breach only moves later meanwhile.
            due = machine.last_breach_wall + params.auto_resolve_timeout_s
            self._schedule.want(mkey, due)
        series.park(rule_id, due - EARLY_S, None, levels)
        return True

    def _wake(self, series: Series, skey: SeriesKey, rule_id: str, device_id: str) -> None:
        """Settle a parked machine and put it back in the per-point loop."""
        series.unpark((rule_id, device_id), self.machines[(rule_id, device_id)])
        self._active.setdefault(skey, {})[rule_id] = None

    def _point_of_rule(self, rule: Rule, device_id: str, key: str, point: Point, when: float, now: float,
                       out: list[Emitted], series: Series | None) -> None:  # fmt: skip
        """One rule and one point: what the naive loop does for every rule of the point's metric."""
        if not rule.enabled:
            return
        try:
            _, params, ids, levels = self._compiled(rule)
            if ids is not None and device_id not in ids:
                return
            spec = rule.spec
            tagged = bool(spec.device_groups or spec.device_tags)
            if tagged and not matches_tags(spec, point.tags):
                return
            mkey = (rule.rule_id, device_id)
            machine = self.machines.get(mkey)
            if machine is None:
                if params.no_data_for_s is None and not holds(params.condition, point.value, params.threshold):
                    return  # a machine starts at its first breach (or first point, for no-data rules)
                machine = self.machines[mkey] = sm.Machine()
                self._machine_added(rule, device_id)
            self.visits += 1
            no_data = params.no_data_for_s is not None
            before = None if no_data else self._essentials(machine)  # a no-data machine is saved on every point
            transitions = sm.on_point(machine, params, ident=f"{rule.rule_id}|{device_id}", key=key,
                                      value=point.value, event_time=when, now=now)  # fmt: skip
            if no_data or self._essentials(machine) != before:
                self.changed.add(mkey)
            self._schedule.want(mkey, deadline(machine, params))
            if series is not None and not tagged and series.level_with(machine):
                # Out of the per-point loop until a point may breach its rule or is due to resolve / end a
                # cooldown (the series does its bookkeeping meanwhile).
                skey = (device_id, spec.metric_name)
                active = self._active.get(skey)
                if active is not None and rule.rule_id in active and self._park(series, skey, rule.rule_id, machine,
                                                                                  params, levels):  # fmt: skip
                    del active[rule.rule_id]
        except Exception:  # a bad rule never stops the others
            self.rule_errors += 1
            self.log.exception("rule_failed", rule_id=rule.rule_id, device_id=device_id)
            return
        if transitions:
            out.extend(Emitted(rule, device_id, t) for t in transitions)

    # -- the clock, operators, saving ----------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[Emitted]:
        """Time-driven transitions; rules disabled or deleted resolve their open alerts; deleted rules' machines go.

        Visits the machines with something due and those of rules changed since the last tick, in the order
        of ``machines`` (as a walk over all of them would: the others would do nothing).
        """
        now = time.time() if now is None else now
        self._refresh()
        keys = self._schedule.due(now)
        if self._attention:
            keys.extend(self._attention)
            self._attention = set()
        out: list[Emitted] = []
        order = self._order
        for mkey in sorted(set(keys), key=lambda k: order.get(k, -1)):
            machine = self.machines.get(mkey)
            if machine is None:
                continue
            rule_id, device_id = mkey
            rule = self.rules.rules.get(rule_id)
            if rule is None or not rule.enabled:
                former = rule or self.rules.deleted.get(rule_id)
                if former is not None and (machine.alert_id or machine.nodata_alert_id):
                    reason = "rule deleted" if rule is None else "rule disabled"
                    out.extend(Emitted(former, device_id, t) for t in sm.close_all(machine, reason, now))
                    self.changed.add(mkey)
                if rule is None:  # deleted (ids are never reused): the machine goes, in the same save
                    self._machine_removed(mkey)
                    self._params_cache.pop(rule_id, None)
                    self.changed.add(mkey)  # a changed key with no machine is saved as a delete
                continue  # a disabled rule's machine is looked at again when the rule changes
            self.visits += 1
            params = self._params(rule)
            parked = self._parked_on(mkey)
            if parked is not None:
                parked[1].unpark(mkey, machine)
            before = self._essentials(machine)
            transitions = sm.on_tick(machine, params, ident=f"{rule_id}|{device_id}", now=now)
            if transitions or self._essentials(machine) != before:
                self.changed.add(mkey)
            out.extend(Emitted(rule, device_id, t) for t in transitions)
            self._schedule.want(mkey, deadline(machine, params))
            if parked is not None:  # settled, and still level with its series: parked again if still quiet
                skey, series = parked
                if not self._park(series, skey, rule_id, machine, params, self._compiled(rule)[3]):
                    self._active.setdefault(skey, {})[rule_id] = None  # e.g. a no-data alert opened: a point closes it
        return out

    def operator_resolved(self, alert_id: str, rule_id: str, device_id: str, now: float) -> None:
        """An operator resolved an alert: its machine starts cooling down."""
        machine = self.machines.get((rule_id, device_id))
        rule = self.rules.rules.get(rule_id)
        if machine is not None and rule is not None:
            if (parked := self._parked_on((rule_id, device_id))) is not None:
                # Its phase may change (recovering → cooling down): its due time with it. The next point parks it.
                self._wake(parked[1], parked[0], rule_id, device_id)
            params = self._params(rule)
            sm.on_manual_resolve(machine, params, alert_id=alert_id, now=now)
            self.changed.add((rule_id, device_id))
            self._schedule.want((rule_id, device_id), deadline(machine, params))

    def settle(self, keys: Iterable[Key]) -> None:
        """Bring the parked ones of ``keys`` up to date in ``machines`` (before saving them); they stay parked."""
        for key in keys:
            skey = self._filed.get(key)
            series = None if skey is None else self._series.get(skey)
            if series is not None and key[0] in series.parked:
                series.catch_up(key[0], self.machines[key])

    def snapshot(self) -> dict[Key, sm.Machine]:
        """Copies of every machine as a walk of every point over it would have left it (parked ones settled)."""
        out = {}
        for key, m in self.machines.items():
            skey = self._filed.get(key)
            series = None if skey is None else self._series.get(skey)
            if series is not None and key[0] in series.parked:
                m = msgspec.structs.replace(m)
                series.settle(m, key[0])
            out[key] = m
        return out

    @property
    def late_points(self) -> int:
        """Points seen too late to evaluate, over every machine of the partition (parked ones included)."""
        pending = sum(s.late - mark[0] for s in self._series.values() for mark in s.parked.values())
        return sum(m.late_points for m in self.machines.values()) + pending
