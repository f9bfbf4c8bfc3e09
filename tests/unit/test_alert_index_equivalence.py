"""The indexed evaluator produces exactly what the naive one does (Hypothesis, stateful).

Random rules (every condition, numeric / text / boolean thresholds, device lists, groups, tags, no-data,
hysteresis), random rule changes (update — also of the metric —, enable, disable, delete), random
point streams from a few devices (late points included), clock ticks and operator resolves are fed to
both evaluators over one RuleBook. After every step they must have emitted the same transitions in the
same order, hold equal machines, and mark the same machines changed.
"""

from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from alert_worker.breach_index import compile_metric
from alert_worker.emitter import Emitted
from alert_worker.evaluator import Evaluator
from alert_worker.rules import Rule, RuleBook
from telemetry_schemas.events import AlertRuleCreated, AlertRuleUpdated
from telemetry_schemas.rules import RuleSpec
from telemetry_schemas.values import Point
from tests.support.alert_rule_steps import rule_event_steps
from tests.support.naive_evaluator import NaiveEvaluator

LOG = structlog.get_logger().bind(test="index-equivalence")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
METRICS = ["temp", "hum"]
DEVICES = ["d0", "d1", "d2"]
CONDITIONS = [">", ">=", "<", "<=", "==", "!="]
# Thresholds and values share a small pool so that equalities and boundaries happen often.
NUMBERS = [0, 1, 1.0, 2, 2.5]
ODD = [-1, 1e300, float("inf"), float("-inf"), "on", "off", "", True, False]
VALUES = st.one_of(
    st.sampled_from(NUMBERS), st.sampled_from(NUMBERS), st.sampled_from(ODD), st.just(float("nan")),
    st.just({"lat": 1.0, "lon": 2.0}), st.floats(-1, 3, allow_nan=False),
)  # fmt: skip
THRESHOLDS = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS), st.sampled_from(ODD))


@st.composite
def specs(draw: st.DrawFn) -> RuleSpec:
    spec: dict[str, Any] = {
        "name": "r", "metric_name": draw(st.sampled_from(METRICS)), "condition": draw(st.sampled_from(CONDITIONS)),
        "threshold_value": draw(THRESHOLDS), "evaluation_window": draw(st.sampled_from([60, 120])),
        "trigger_count": draw(st.integers(1, 3)), "cooldown_minutes": draw(st.sampled_from([1, 5])),
        "auto_resolve": draw(st.booleans()), "auto_resolve_timeout": 300, "enabled": draw(st.integers(0, 3)) > 0,
        "device_ids": draw(st.lists(st.sampled_from([*DEVICES, "elsewhere"]), max_size=2)),
    }  # fmt: skip
    if draw(st.booleans()):
        spec["clear_threshold"] = draw(THRESHOLDS)
    if draw(st.integers(0, 4)) == 0:
        spec["no_data_for"] = draw(st.sampled_from([10, 100]))
    if draw(st.integers(0, 3)) == 0:
        spec["device_groups"] = draw(st.lists(st.sampled_from(["g1", "g2", ""]), min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        spec["device_tags"] = {"site": draw(st.sampled_from(["a", "b"]))}
    return msgspec.convert(spec, RuleSpec, strict=False)


points_of = st.lists(
    st.tuples(st.sampled_from(METRICS), VALUES, st.integers(-400, 60),
              st.sampled_from([{}, {"group": "g1"}, {"group": "g2", "site": "a"}, {"site": "b"}])),
    min_size=1, max_size=6,
)  # fmt: skip


class SameAsNaive(rule_event_steps(specs(), LOG)):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.emitted = 0  # transitions seen, so a run that never fires shows up as such in statistics

    @rule(device=st.sampled_from(DEVICES), batch=points_of, dw=st.integers(0, 200))
    def points(self, device: str, batch: list[tuple[str, Any, int, dict[str, str]]], dw: int) -> None:
        self.wall += dw
        self.event += dw
        pts = []
        for i, (metric, value, de, tags) in enumerate(batch):
            at = datetime.fromtimestamp(self.event + de, UTC)
            pts.append((f"{self.seq}:{self.wall}:{i}", Point(timestamp=at, metric_name=metric, value=value, tags=tags)))
        self._same(self.indexed.points(device, pts, self.wall), self.naive.points(device, pts, self.wall))

    @rule(dw=st.integers(0, 700))
    def tick(self, dw: int) -> None:
        self.wall += dw
        self._same(self.indexed.tick(self.wall), self.naive.tick(self.wall))

    def _same(self, indexed: list[Emitted], naive: list[Emitted]) -> None:
        super()._same(indexed, naive)
        self.emitted += len(naive)


TestSameAsNaive = SameAsNaive.TestCase
TestSameAsNaive.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


def _rule(rule_id: str, **kw: Any) -> Rule:
    base = {"name": "r", "metric_name": "temp", "condition": ">", "threshold_value": 5}
    return Rule(rule_id, msgspec.convert({**base, **kw}, RuleSpec, strict=False), T0)


def test_a_value_finds_only_the_rules_it_breaches() -> None:
    rules = [_rule(f"gt{t}", threshold_value=t) for t in range(10)] + [
        _rule("le3", condition="<=", threshold_value=3), _rule("eq7", condition="==", threshold_value=7.0),
        _rule("ne7", condition="!=", threshold_value=7), _rule("named", threshold_value=0, device_ids=["d1"]),
        _rule("off", threshold_value=0, enabled=False),
    ]  # fmt: skip
    index = compile_metric(rules)
    assert [r.rule_id for r in index.candidates("d0", 7)] == ["gt0", "gt1", "gt2", "gt3", "gt4", "gt5", "gt6", "eq7"]
    assert [r.rule_id for r in index.candidates("d0", 3)] == ["gt0", "gt1", "gt2", "le3", "ne7"]
    assert [r.rule_id for r in index.candidates("d1", -1)] == ["le3", "ne7"]
    assert [r.rule_id for r in index.candidates("d1", 0.5)] == ["gt0", "le3", "ne7", "named"]
    assert [r.rule_id for r in index.candidates("d0", "text")] == ["ne7"]


def test_a_rule_moved_to_another_metric_keeps_its_machine() -> None:
    """PUT may change a rule's metric: its (rule, device) machine then answers to the new metric's points."""
    book = RuleBook()
    spec = msgspec.convert({"name": "r", "metric_name": "temp", "condition": ">", "threshold_value": 5,
                            "trigger_count": 2}, RuleSpec)  # fmt: skip
    book._apply(AlertRuleCreated(rule_id="r1", rule=spec, at=T0, by="t"), 1)
    indexed, naive = Evaluator(book, {}, 120.0, LOG), NaiveEvaluator(book, {}, 120.0, LOG)
    first = [("k1", Point(timestamp=T0, metric_name="temp", value=9))]
    assert indexed.points("d0", first, 1.0) == naive.points("d0", first, 1.0) == []
    book._apply(AlertRuleUpdated(rule_id="r1", rule=msgspec.structs.replace(spec, metric_name="hum"), at=T0, by="t"), 2)
    second = [("k2", Point(timestamp=T0, metric_name="hum", value=1))]  # no breach: only the machine sees it
    assert indexed.points("d0", second, 2.0) == naive.points("d0", second, 2.0) == []
    assert indexed.machines == naive.machines and indexed.machines[("r1", "d0")].last_value == 1
