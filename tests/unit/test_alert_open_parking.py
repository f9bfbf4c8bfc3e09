"""Open machines (alert firing or recovering) parked on their series come back exactly as the naive loop has them.

A parked open machine is not visited by the points that keep it firing, move it between FIRING and
RECOVERING or set its last breach time: its series answers "last breach, last point past the clear
threshold" from value stacks when it is settled (alert_worker/series.py). These tests make that path
run: a Hypothesis state machine of ordered rules with hysteresis whose values flap around the thresholds
(breaches, band values, past-clear values, non-numbers; in-order, out-of-order and late points), commits
(``changed`` cleared), ticks across auto-resolve timeouts and cooldowns, operator resolves, rule updates,
disables, enables and deletes — compared with the naive evaluator after every step; then scenarios that
count visits and would fail if a parked firing machine missed its resolve.
"""

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import structlog
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

import alert_worker.evaluator as evaluator_module
from telemetry_core.alerting.state_machine import Closed, Opened, Phase
from telemetry_schemas.events import AlertRuleDeleted, AlertRuleEnabled
from telemetry_schemas.rules import RuleSpec
from telemetry_schemas.values import Point
from tests.support.alert_pair import Pair
from tests.support.alert_rule_steps import rule_event_steps

LOG = structlog.get_logger().bind(test="open-parking")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEVICES = ["d0", "d1"]
LEVELS = [0, 1, 2, 3]  # thresholds and clear thresholds: values land on, between and beyond them
VALUES = st.one_of(
    st.sampled_from([0, 0.5, 1, 1.0, 1.5, 2, 2.5, 3, 3.5, -1, 4]), st.sampled_from([0.5, 1.5, 2.5]),
    st.sampled_from(["on", True, float("nan"), float("inf")]),
)  # fmt: skip


@st.composite
def specs(draw: st.DrawFn) -> RuleSpec:
    spec: dict[str, Any] = {
        "name": "r", "metric_name": "temp", "condition": draw(st.sampled_from([">", ">=", "<", "<=", ">", "<", "=="])),
        "threshold_value": draw(st.sampled_from(LEVELS)), "evaluation_window": 60,
        "trigger_count": draw(st.sampled_from([1, 1, 2])), "cooldown_minutes": 1,
        "auto_resolve": draw(st.integers(0, 3)) > 0, "auto_resolve_timeout": 300,
    }  # fmt: skip
    if draw(st.integers(0, 3)) > 0:  # hysteresis mostly on the recovering side, a band of 0.5 to 2; at times not
        t, side = spec["threshold_value"], -1 if spec["condition"] in (">", ">=") else 1
        spec["clear_threshold"] = draw(st.one_of(st.sampled_from([t + side * d for d in (0.5, 1, 2)]),
                                                 st.sampled_from(LEVELS)))  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        spec["device_ids"] = [draw(st.sampled_from(DEVICES))]
    if draw(st.integers(0, 7)) == 0:
        spec["no_data_for"] = 100
    return msgspec.convert(spec, RuleSpec, strict=False)


class OpenParkingSameAsNaive(rule_event_steps(specs(), LOG)):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        # Small stacks, so that a run also settles open machines when its stacks fill up (STACK_CAP).
        self.cap, evaluator_module.STACK_CAP = evaluator_module.STACK_CAP, 6

    def teardown(self) -> None:
        evaluator_module.STACK_CAP = self.cap

    @rule(device=st.sampled_from(DEVICES), dw=st.sampled_from([0, 1, 5, 60, 150, 301]),
          batch=st.lists(st.tuples(VALUES, st.sampled_from([1, 1, 1, 0, -3, -200])), min_size=1, max_size=8))  # fmt: skip
    def points(self, device: str, dw: int, batch: list[tuple[Any, int]]) -> None:
        """Mostly newer points (event time +1 s each), some equal, older or late (beyond the 120 s lateness)."""
        self.wall += dw
        pts = []
        for i, (value, step) in enumerate(batch):
            if step > 0:
                self.event += step
            at = datetime.fromtimestamp(self.event + min(step, 0), UTC)
            pts.append((f"{self.seq}:{self.wall}:{i}", Point(timestamp=at, metric_name="temp", value=value)))
        parked_open = sum(len(s.opened) for s in self.indexed._series.values())
        event("open machines parked before a batch: " + ("none" if not parked_open else "some"))
        self._same(self.indexed.points(device, pts, self.wall), self.naive.points(device, pts, self.wall))

    @rule(dw=st.sampled_from([1, 60, 299, 300, 301, 700]))
    def tick(self, dw: int) -> None:
        self.wall += dw
        self._same(self.indexed.tick(self.wall), self.naive.tick(self.wall))


TestOpenParkingSameAsNaive = OpenParkingSameAsNaive.TestCase
TestOpenParkingSameAsNaive.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)


def _open_parked(pair: Pair) -> int:
    return sum(len(s.opened) for s in pair.indexed._series.values())


def test_a_parked_firing_machine_recovers_and_resolves_at_the_tick() -> None:
    """Breaches, band values and a value past the clear threshold while parked: the tick resolves it on time."""
    pair = Pair({"clear_threshold": 40, "auto_resolve_timeout": 300})
    (opened,) = pair.points(0, (0, 60))
    assert isinstance(opened, Opened)
    pair.points(1, (1, 70))  # still firing, to be saved: parked open from here on
    assert _open_parked(pair) == 1
    before = pair.indexed.visits
    pair.points(50, (2, 45))  # between the clear threshold and the threshold: still firing
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.FIRING
    pair.points(100, (3, 65))  # a breach: the last breach arrives at wall 100
    pair.points(150, (4, 45), (5, 30), (6, 45))  # past the clear threshold: recovering from there
    assert pair.indexed.visits == before  # not one visit by 5 points
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.RECOVERING
    assert pair.tick(301) == []  # 300 s after the first breach, not after the last (wall 100)
    (closed,) = pair.tick(400)
    assert isinstance(closed, Closed) and closed.reason.startswith("auto-resolved")
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.COOLDOWN


@pytest.mark.parametrize(("condition", "threshold", "clear", "breach", "band", "stay", "past", "on_clear"), [
    (">", 50, 40, 60, 45, 40.5, 30, 40), (">=", 50, 40, 50, 45, 40, 30, 39.5),
    ("<", 10, 20, 5, 15, 19.5, 25, 20), ("<=", 10, 20, 10, 15, 20, 25, 20.5),
])  # fmt: skip
def test_hysteresis_of_a_parked_open_machine(condition: str, threshold: float, clear: float, breach: float,
                                             band: float, stay: float, past: float, on_clear: float) -> None:  # fmt: skip
    """Between the two thresholds (``stay`` just so) it stays firing; past the clear one (``on_clear``) it recovers."""
    pair = Pair({"condition": condition, "threshold_value": threshold, "clear_threshold": clear})
    pair.points(0, (0, breach))
    pair.points(1, (1, breach))  # parked open
    assert _open_parked(pair) == 1
    before = pair.indexed.visits
    pair.points(2, (2, band), (3, stay))
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.FIRING
    pair.points(3, (4, on_clear))
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.RECOVERING
    pair.points(4, (5, band), (6, breach), (7, past), (8, band))
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.RECOVERING
    pair.points(5, (9, breach), (10, "off"))  # not a number: past every clear threshold
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.RECOVERING
    pair.points(6, (11, breach), (12, band))
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.FIRING
    assert pair.indexed.visits == before


def test_a_point_due_to_resolve_a_parked_firing_machine_wakes_it() -> None:
    """No tick in between: the first point 300 s after the last breach resolves the recovered alert."""
    pair = Pair({"auto_resolve_timeout": 300})
    pair.points(0, (0, 60))
    pair.points(1, (1, 60))  # parked open
    pair.points(2, (2, 10))  # recovering (threshold = clear threshold), still parked
    assert pair.points(299, (3, 10)) == []
    (closed,) = pair.points(301, (4, 10))
    assert isinstance(closed, Closed) and closed.reason.startswith("auto-resolved")


def test_a_parked_firing_machine_that_keeps_firing_is_not_resolved() -> None:
    """Breaches while parked move its last breach time: the tick at the old due time must leave it firing."""
    pair = Pair({"auto_resolve_timeout": 300})
    pair.points(0, (0, 60))
    pair.points(1, (1, 60))  # parked open, due at 300
    pair.points(250, (2, 70))  # a breach at wall 250 (not visited)
    assert pair.tick(301) == []  # visits it (its due time), finds it firing since 250
    pair.points(302, (3, 10))  # recovering now
    assert pair.tick(549) == []
    (closed,) = pair.tick(551)
    assert isinstance(closed, Closed)


def test_after_a_save_a_firing_machine_parks_again_only_once_it_is_to_be_saved() -> None:
    """Parked open, its changes go unseen: so it parks only while in ``changed``, and a save takes it back."""
    pair = Pair({})
    pair.points(0, (0, 60))
    pair.points(1, (1, 70))  # parked open (to be saved: it opened an alert)
    assert _open_parked(pair) == 1
    pair.save()
    before = pair.indexed.visits
    pair.points(2, (2, 80))  # woken by the save; still firing, nothing to save: stays in the loop
    assert pair.indexed.visits == before + 1 and _open_parked(pair) == 0
    pair.points(3, (3, 90))
    assert pair.indexed.visits == before + 2
    pair.points(4, (4, 40))  # recovering: to be saved (Pair checks ``changed`` against the naive loop's)
    assert ("r000", "d0") in pair.indexed.changed


def test_flapping_alerts_cost_no_visit_per_point_while_unsaved() -> None:
    """200 rules whose alerts flap between firing and recovering on every point: visits per commit, not per point."""
    rules = 200
    pair = Pair(*({"condition": ">=", "threshold_value": 50} for _ in range(rules)))
    pair.points(0, (0, 60))  # opens every alert
    before = pair.indexed.visits
    for s in range(1, 101):
        pair.points(s, (s, 60 if s % 2 else 10))
    assert pair.indexed.visits - before <= 2 * rules  # parked open after a visit or two each
    assert pair.naive.visits - before == 100 * rules
    pair.save()  # the engine's commit clears ``changed``: the next point takes them back to the loop
    assert _open_parked(pair) == rules
    before = pair.indexed.visits
    pair.points(101, (101, 60))
    assert pair.indexed.visits - before == rules and _open_parked(pair) == rules  # visited once, parked again


def test_disabling_enabling_and_deleting_a_rule_with_a_parked_open_machine() -> None:
    pair = Pair({}, {"condition": "<", "threshold_value": 20, "clear_threshold": 30})
    pair.points(0, (0, 60), (1, 10))  # r000 fires and recovers; r001 fires
    pair.points(1, (2, 60), (3, 10))  # both parked open
    assert _open_parked(pair) == 2
    pair.book._apply(AlertRuleEnabled(rule_id="r001", enabled=False, at=T0, by="t"), 10)
    (closed,) = pair.tick(2)
    assert isinstance(closed, Closed) and closed.reason == "rule disabled"
    pair.points(3, (4, 25), (5, 5))  # r000 sees them parked; r001 does not
    pair.book._apply(AlertRuleEnabled(rule_id="r001", enabled=True, at=T0, by="t"), 11)
    pair.points(4, (6, 5), (7, 35))  # r001 fires again
    pair.book._apply(AlertRuleDeleted(rule_id="r000", at=T0, by="t"), 12)
    (gone,) = pair.tick(5)
    assert isinstance(gone, Closed) and gone.reason == "rule deleted"
    assert list(pair.indexed.machines) == [("r001", "d0")]


def test_stacks_that_fill_up_settle_their_open_machines() -> None:
    """A steady fall keeps every value on the high stack: past STACK_CAP the open machines are settled (and stay
    parked) before the stacks start afresh, so what the dropped points did is not lost."""
    pair = Pair({"condition": ">", "threshold_value": 0, "clear_threshold": -5})
    pair.points(0, (0, 1))
    pair.points(1, (1, 2))  # parked open
    pair.points(2, (2, -10))  # past the clear threshold: recovering
    series = pair.indexed._series[("d0", "temp")]
    before, at = pair.indexed.visits, 3
    while at < evaluator_module.STACK_CAP + 100:  # falling, between the thresholds: recovering still
        pair.points(at, *((at + i, -(at + i) / 1000) for i in range(50)))
        at += 50
        assert series.stacks is not None and len(series.stacks) <= evaluator_module.STACK_CAP + 1
    assert _open_parked(pair) == 1 and pair.indexed.visits == before
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.RECOVERING
    pair.points(at, (at, 1))  # a breach: firing again
    assert pair.indexed.snapshot()[("r000", "d0")].phase is Phase.FIRING
