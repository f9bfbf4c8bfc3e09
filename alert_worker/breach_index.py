"""Which enabled rules of one metric a value breaches, without looking at the others (pure).

The naive evaluator checks a point against every enabled rule of its metric. Most rules do nothing
with most points: a rule acts on a point only when its condition holds for the value, when it is a
no-data rule (whose machine starts at the first point), or when its (rule, device) machine already
exists. This module answers the first two; the evaluator keeps the third (machines) itself.

Per metric and per target scope (rules for every device; rules naming a device, one bucket per named
device) the enabled rules are kept as

* ``> >= < <=``: thresholds sorted, so the breached rules are one ``bisect`` and a slice; a value below
  every ``>``/``>=`` threshold and above every ``<``/``<=`` one costs two comparisons;
* ``==``: a dict from the threshold's comparison key to its rules (one lookup);
* ``!=``: every rule breaches except those whose key equals the value's (skipped by key);
* no-data rules: always candidates.

The answer is a superset of what the naive loop would act on: the evaluator still runs the very same
per-rule code (``targets``, ``holds``, the state machine) on each candidate, so the index narrows the
search and never decides anything. Device-group and tag filters depend on the point's tags and are left
to that per-candidate check.
"""

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

from alert_worker.rules import Rule
from telemetry_schemas.enums import Comparison

ValueKey = tuple[str, object]


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def value_key(x: object) -> ValueKey | None:
    """What ``==``/``!=`` compare (see conditions.holds): numbers as floats, text and booleans as themselves.

    None for values equal to no threshold: NaN, objects, geolocations (thresholds are numbers, text, booleans).
    """
    if _is_number(x):
        try:
            f = float(x)  # type: ignore[arg-type]
        except OverflowError:  # an integer beyond any double: holds() fails on it too, per rule
            return None
        return None if math.isnan(f) else ("n", f)
    if isinstance(x, bool):
        return ("b", x)
    if isinstance(x, str):
        return ("s", x)
    return None


@dataclass
class _Sorted:
    """Rules of one ordered condition, by threshold."""

    thresholds: list[float] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def of(cls, pairs: list[tuple[float, int, Rule]]) -> "_Sorted":
        pairs.sort(key=lambda p: (p[0], p[1]))
        return cls([p[0] for p in pairs], [p[2] for p in pairs])


@dataclass
class Bucket:
    """The enabled rules of one metric for one target scope."""

    gt: _Sorted = field(default_factory=_Sorted)
    ge: _Sorted = field(default_factory=_Sorted)
    lt: _Sorted = field(default_factory=_Sorted)
    le: _Sorted = field(default_factory=_Sorted)
    # Values below ``above_from`` breach no >/>= rule; values above ``below_to`` no </<= rule.
    above_from: float = math.inf
    below_to: float = -math.inf
    eq: dict[ValueKey, list[Rule]] = field(default_factory=dict)
    ne: list[tuple[ValueKey | None, Rule]] = field(default_factory=list)
    no_data: list[Rule] = field(default_factory=list)

    def collect(self, value: object, out: list[Rule]) -> None:
        """Append the rules of this bucket that ``value`` may make act (breach, or no-data)."""
        if self.no_data:
            out.extend(self.no_data)
        kind = type(value)  # floats and ints first: the common case, without the isinstance calls
        if (kind is float or kind is int or (kind is not bool and _is_number(value))) and value == value:  # not NaN
            v: float = value  # type: ignore[assignment]
            if v >= self.above_from:
                out.extend(self.gt.rules[: bisect_left(self.gt.thresholds, v)])  # threshold < v
                out.extend(self.ge.rules[: bisect_right(self.ge.thresholds, v)])  # threshold <= v
            if v <= self.below_to:
                out.extend(self.lt.rules[bisect_right(self.lt.thresholds, v) :])  # threshold > v
                out.extend(self.le.rules[bisect_left(self.le.thresholds, v) :])  # threshold >= v
        if self.eq or self.ne:
            key = value_key(value)
            if self.eq and key is not None:
                out.extend(self.eq.get(key, ()))
            for k, rule in self.ne:
                if key is None or k != key:
                    out.append(rule)


@dataclass
class MetricIndex:
    """One metric's buckets: for every device, and per device named by some rule; rank = naive visit order."""

    every: Bucket
    named: dict[str, Bucket]
    rank: dict[str, int]
    # The no-data rules again, by their thresholds (None: the metric has none): which of them a value may
    # breach, for the evaluator to wake their parked machines (a non-breaching point only feeds them data).
    no_data: "MetricIndex | None" = None

    def candidates(self, device_id: str, value: object) -> list[Rule]:
        """Rules of the metric that may act on ``value`` from ``device_id`` (possibly repeated)."""
        out: list[Rule] = []
        self.every.collect(value, out)
        bucket = self.named.get(device_id)
        if bucket is not None:
            bucket.collect(value, out)
        return out


def _add(bucket: Bucket, rule: Rule, rank: int, ordered: dict[int, dict[Comparison, list[tuple[float, int, Rule]]]],
         by_threshold: bool = False) -> None:  # fmt: skip
    spec = rule.spec
    if spec.no_data_for is not None and not by_threshold:
        bucket.no_data.append(rule)
        return  # a candidate for every point: no need to index its threshold as well
    cond, th = spec.condition, spec.threshold_value
    if cond is Comparison.EQ:
        key = value_key(th)
        if key is not None:  # a NaN threshold equals nothing
            bucket.eq.setdefault(key, []).append(rule)
    elif cond is Comparison.NE:
        bucket.ne.append((value_key(th), rule))
    elif _is_number(th) and th == th:  # a NaN threshold is never met
        ordered.setdefault(id(bucket), {}).setdefault(cond, []).append((th, rank, rule))  # type: ignore[arg-type]
    # an ordered condition with a non-numeric threshold never holds (conditions.holds): never a candidate


def compile_metric(rules: Iterable[Rule], no_data_by_threshold: bool = False) -> MetricIndex:
    """Index the enabled ones of ``rules`` (one metric's, in the naive loop's order).

    ``no_data_by_threshold``: index only the no-data rules, by their thresholds (``MetricIndex.no_data``).
    """
    rules = list(rules)
    index = MetricIndex(Bucket(), {}, {})
    if not no_data_by_threshold and any(r.enabled and r.spec.no_data_for is not None for r in rules):
        index.no_data = compile_metric(rules, no_data_by_threshold=True)
    ordered: dict[int, dict[Comparison, list[tuple[float, int, Rule]]]] = {}
    buckets: dict[int, Bucket] = {id(index.every): index.every}
    for rank, rule in enumerate(rules):
        index.rank[rule.rule_id] = rank
        if not rule.enabled or (no_data_by_threshold and rule.spec.no_data_for is None):
            continue
        if not rule.spec.device_ids:
            _add(index.every, rule, rank, ordered, no_data_by_threshold)
            continue
        for device_id in dict.fromkeys(rule.spec.device_ids):
            bucket = index.named.get(device_id)
            if bucket is None:
                bucket = index.named[device_id] = Bucket()
                buckets[id(bucket)] = bucket
            _add(bucket, rule, rank, ordered, no_data_by_threshold)
    for bucket_id, by_condition in ordered.items():
        bucket = buckets[bucket_id]
        for cond, pairs in by_condition.items():
            setattr(bucket, {Comparison.GT: "gt", Comparison.GE: "ge", Comparison.LT: "lt", Comparison.LE: "le"}[cond],
                    _Sorted.of(pairs))  # fmt: skip
        if bucket.gt.thresholds or bucket.ge.thresholds:
            bucket.above_from = min(s.thresholds[0] for s in (bucket.gt, bucket.ge) if s.thresholds)
        if bucket.lt.thresholds or bucket.le.thresholds:
            bucket.below_to = max(s.thresholds[-1] for s in (bucket.lt, bucket.le) if s.thresholds)
    return index
