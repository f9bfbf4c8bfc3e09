"""Quiet machines stay out of the per-point loop and the clock tick, and come back exactly as the naive loop has them.

Counting, not timing: ``Evaluator.visits`` counts machines run through the state machine (by a point or a
tick). Each scenario also runs the naive evaluator (every rule, every machine, every tick) beside the
indexed one and checks after every step that both emitted the same transitions and hold the same machines
(parked ones settled), changed keys and late-point count.
"""

import msgspec
import pytest

from telemetry_core.alerting.state_machine import Closed, Opened, Phase
from telemetry_schemas.events import AlertRuleCreated, AlertRuleDeleted, AlertRuleEnabled
from telemetry_schemas.rules import RuleSpec
from tests.support.alert_pair import T0, WALL0, Pair


@pytest.mark.parametrize("rules", [10, 200])
def test_quiet_machines_are_not_visited_by_points_or_ticks(rules: int) -> None:
    """Recovering alerts (and, once resolved, cooling-down machines) cost nothing per point, however many."""
    pair = Pair(*({"threshold_value": 100 + i} for i in range(rules)))
    opened = pair.points(0, (0, 10_000))  # breaches every rule: an alert each
    assert len(opened) == rules and all(isinstance(t, Opened) for t in opened)
    pair.points(1, (1, 0))  # below every threshold: each alert recovers (one visit each), then its machine parks
    before = pair.indexed.visits
    for s in range(2, 52):  # newer, older, late: bookkeeping the series does once for all the machines
        pair.points(s, (s, 1.5), (s - 1, 2.5), (s - 500, 3.5))
    assert pair.indexed.visits == before  # not one machine visited by 150 points
    assert pair.naive.visits - before == 150 * rules  # the walk it replaces
    assert pair.indexed.late_points == 50 * rules  # counted per machine, as before
    pair.tick(100)  # nothing due before the auto-resolve timeout: the tick visits no machine either
    assert pair.indexed.visits == before
    closed = pair.tick(3_700)  # auto_resolve_timeout (3600 s) passed: every alert resolves at the tick
    assert len(closed) == rules and all(isinstance(t, Closed) for t in closed)
    assert pair.indexed.visits == before + rules
    pair.points(3_701, (3_701, 0))  # cooling down now: still parked
    assert pair.indexed.visits == before + rules
    assert {m.phase for m in pair.indexed.snapshot().values()} == {Phase.COOLDOWN}


def test_a_point_due_to_resolve_a_parked_alert_wakes_it() -> None:
    """The naive loop resolves a recovered alert at the first point after the timeout: so does the index."""
    pair = Pair({"auto_resolve_timeout": 300})
    pair.points(0, (0, 60))
    pair.points(1, (1, 10))  # recovering, parked
    before = pair.indexed.visits
    assert pair.points(100, (100, 10)) == []
    assert pair.indexed.visits == before
    (closed,) = pair.points(301, (301, 10))  # 300 s after the breach arrived, no tick in between
    assert isinstance(closed, Closed) and closed.reason.startswith("auto-resolved")
    assert pair.indexed.visits == before + 1


def test_a_machine_behind_its_series_is_not_parked() -> None:
    """A machine opened by an out-of-order point has an older newest event than the series: lateness differs."""
    pair = Pair({}, {"threshold_value": 5})
    pair.points(0, (1000, 10))  # the second rule's machine: the (device, metric) series is kept from now on
    pair.points(1, (1001, 10))  # the series' newest: 1001
    pair.points(2, (900, 60))  # breach of the first rule at 900 (not late): alert, machine newest 900
    pair.points(3, (950, 10))  # recovers, quiet; still behind the series (950 vs 1001)
    pair.points(4, (850, 10))  # late for the series (< 881), not for the machine (>= 830): naive evaluates it
    pair.points(5, (1002, 10), (860, 10))  # level now: parked; 860 is late for both
    assert pair.indexed.snapshot()[("r000", "d0")].late_points == 1


def test_a_tag_filtered_rule_machine_sees_only_its_points() -> None:
    pair = Pair({"device_tags": {"site": "a"}})
    pair.points(0, (0, 60), tags={"site": "a"})
    pair.points(1, (1, 10), tags={"site": "a"})  # recovering
    pair.points(2, (2, 10), (3, 11), tags={"site": "b"})  # not the rule's points: its machine must not see them
    pair.points(3, (4, 60), tags={"site": "a"})


def test_a_parked_no_data_machine_is_saved_every_point_and_opens_and_closes_its_alert() -> None:
    pair = Pair({"no_data_for": 100, "threshold_value": 1e9})
    pair.points(0, (0, 1))
    pair.points(1, (1, 2))  # parked now
    before = pair.indexed.visits
    for s in range(2, 12):
        pair.indexed.changed.clear()
        pair.naive.changed.clear()
        pair.points(s, (s, 3))  # saved after every point (changed), without a visit
    assert pair.indexed.visits == before
    assert pair.tick(50) == []
    (opened,) = pair.tick(112)  # 100 s after the last point (its arrival time comes from the series)
    assert isinstance(opened, Opened) and opened.kind == "no_data"
    (closed,) = pair.points(113, (113, 4))
    assert isinstance(closed, Closed) and closed.reason == "data resumed"
    (breach,) = pair.points(114, (114, 2e9))  # parked again; a breach of its threshold wakes it
    assert isinstance(breach, Opened) and breach.kind == "threshold"


def test_rule_changes_reach_parked_machines_at_the_next_tick() -> None:
    """Disabling a rule resolves its open alerts at the next tick, parked or not; deleting removes machines."""
    pair = Pair({}, {"threshold_value": 40})
    pair.points(0, (0, 60))
    pair.points(1, (1, 10))  # both recovering, parked
    pair.book._apply(AlertRuleEnabled(rule_id="r000", enabled=False, at=T0, by="t"), 10)
    pair.book._apply(AlertRuleDeleted(rule_id="r001", at=T0, by="t"), 11)
    closed = pair.tick(2)
    assert sorted(t.reason for t in closed if isinstance(t, Closed)) == ["rule deleted", "rule disabled"]
    assert list(pair.indexed.machines) == [("r000", "d0")]
    pair.book._apply(AlertRuleEnabled(rule_id="r000", enabled=True, at=T0, by="t"), 12)
    pair.points(3, (3, 10), (4, 70))


def test_an_operator_resolve_of_a_parked_alert_moves_its_due_time() -> None:
    """Resolved by hand while parked (recovering): it cools down, and a point after the cooldown ends it."""
    pair = Pair({"cooldown_minutes": 1})
    (opened,) = pair.points(0, (0, 60))
    pair.points(1, (1, 10))  # recovering, parked (due at the auto-resolve timeout, an hour away)
    assert isinstance(opened, Opened)
    for evaluator in (pair.indexed, pair.naive):
        evaluator.operator_resolved(opened.alert_id, "r000", "d0", WALL0 + 2)
    pair.points(30, (30, 10))
    pair.points(100, (100, 10))  # past the cooldown (62): the point ends it, as in the naive loop
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.OK


def test_watched_metrics_follow_rule_events_without_a_point() -> None:
    """The engine skims messages of unwatched metrics; the set it asks for must include a rule applied meanwhile."""
    pair = Pair({})
    watched = pair.indexed.watched_metrics()
    assert "temp" in watched and "humidity" not in watched
    spec = msgspec.convert({"name": "h", "metric_name": "humidity", "condition": ">", "threshold_value": 1}, RuleSpec)
    pair.book._apply(AlertRuleCreated(rule_id="h1", rule=spec, at=T0, by="t"), 10)
    assert "humidity" in pair.indexed.watched_metrics()  # no point evaluated in between
    pair.book._apply(AlertRuleDeleted(rule_id="h1", at=T0, by="t"), 11)
    assert "humidity" not in pair.indexed.watched_metrics()
