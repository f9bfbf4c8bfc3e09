"""The alert state machine as pure code: examples, then Hypothesis rule-based (stateful) checks."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from telemetry_core.alerting.conditions import holds, threshold_problem
from telemetry_core.alerting.state_machine import (
    Closed,
    Machine,
    Opened,
    Params,
    Phase,
    close_all,
    on_manual_resolve,
    on_point,
    on_tick,
)
from telemetry_schemas.enums import Comparison
from telemetry_schemas.rules import RuleSpec


def make_rule(**kw: object) -> RuleSpec:
    base = {"name": "cpu", "metric_name": "cpu", "condition": Comparison.GT, "threshold_value": 90}
    return RuleSpec(**{**base, **kw})  # type: ignore[arg-type]


def feed(m: Machine, p: Params, value: float, t: float, now: float | None = None, key: str = "") -> list:
    return on_point(m, p, ident="r|d", key=key or f"k{t}", value=value, event_time=t, now=t if now is None else now)


def test_conditions() -> None:
    assert holds(Comparison.GT, 91, 90) and not holds(Comparison.GT, 90, 90)
    assert holds(Comparison.EQ, "on", "on") and not holds(Comparison.EQ, "on", 1)
    assert holds(Comparison.NE, True, 1)  # bool is not a number here
    assert holds(Comparison.EQ, 1, 1.0)
    assert not holds(Comparison.GT, "99", 90)
    assert threshold_problem(Comparison.GT, "x") == "condition > needs a numeric threshold, got str"
    assert threshold_problem(Comparison.EQ, "x") is None


def test_trigger_count_within_the_window() -> None:
    m, p = Machine(), Params.of(make_rule(trigger_count=3, evaluation_window=60))
    assert feed(m, p, 95, 0) == [] and m.phase is Phase.PENDING
    assert feed(m, p, 95, 30) == []
    assert feed(m, p, 95, 70) == []  # the breach at 0 left the window
    (opened,) = feed(m, p, 95, 80)
    assert isinstance(opened, Opened) and opened.event_time == 80 and m.phase is Phase.FIRING
    assert feed(m, p, 99, 90) == []  # still the same alert


def test_hysteresis_recovery_and_auto_resolve() -> None:
    m, p = Machine(), Params.of(make_rule(clear_threshold=80, auto_resolve_timeout=300, cooldown_minutes=1))
    (opened,) = feed(m, p, 95, 0)
    feed(m, p, 85, 10)
    assert m.phase is Phase.FIRING  # below threshold, above clear: no recovery
    feed(m, p, 79, 20)
    assert m.phase is Phase.RECOVERING
    assert on_tick(m, p, ident="r|d", now=299) == []  # 300 s since the last breach (at 0) not yet over
    feed(m, p, 91, 100)
    assert m.phase is Phase.FIRING  # back to firing, no new alert
    feed(m, p, 70, 110)
    assert on_tick(m, p, ident="r|d", now=399) == []
    (closed,) = on_tick(m, p, ident="r|d", now=400)
    assert closed == Closed(opened.alert_id, "auto-resolved: no breach for 300s", 400)
    assert m.phase is Phase.COOLDOWN


def test_cooldown_blocks_new_alerts_and_reopens_if_the_problem_persists() -> None:
    m, p = Machine(), Params.of(make_rule(cooldown_minutes=5))
    (first,) = feed(m, p, 95, 0)
    on_manual_resolve(m, p, alert_id=first.alert_id, now=10)
    assert feed(m, p, 99, 20) == [] and m.phase is Phase.COOLDOWN
    assert on_tick(m, p, ident="r|d", now=309) == []
    (again,) = on_tick(m, p, ident="r|d", now=310)
    assert isinstance(again, Opened) and again.alert_id != first.alert_id


def test_cooldown_ends_quietly_when_the_problem_is_gone() -> None:
    m, p = Machine(), Params.of(make_rule(cooldown_minutes=5))
    (first,) = feed(m, p, 95, 0)
    on_manual_resolve(m, p, alert_id=first.alert_id, now=10)
    feed(m, p, 50, 20)
    assert on_tick(m, p, ident="r|d", now=400) == [] and m.phase is Phase.OK


def test_late_points_are_counted_not_evaluated() -> None:
    m, p = Machine(), Params.of(make_rule(), lateness_s=300)
    feed(m, p, 10, 1000)
    assert feed(m, p, 99, 600) == []
    assert (m.late_points, m.phase) == (1, Phase.OK)


def test_no_data_opens_and_clears() -> None:
    m, p = Machine(), Params.of(make_rule(no_data_for=60))
    feed(m, p, 10, 0)
    assert on_tick(m, p, ident="r|d", now=59) == []
    (opened,) = on_tick(m, p, ident="r|d", now=60)
    assert opened.kind == "no_data"
    assert on_tick(m, p, ident="r|d", now=500) == []  # one no-data alert at a time
    (closed,) = feed(m, p, 10, 501)
    assert closed == Closed(opened.alert_id, "data resumed", 501)


def test_same_inputs_same_alert_ids() -> None:
    runs = []
    for _ in range(2):
        m, p = Machine(), Params.of(make_rule(trigger_count=2))
        runs.append([feed(m, p, 95, t, key=f"7:{t}") for t in (0, 5)])
    assert runs[0] == runs[1]


def test_close_all_resolves_everything_open() -> None:
    m, p = Machine(), Params.of(make_rule(no_data_for=60))
    (a,) = feed(m, p, 95, 0)
    (b,) = on_tick(m, p, ident="r|d", now=100)
    assert close_all(m, "rule disabled", 101) == [
        Closed(a.alert_id, "rule disabled", 101),
        Closed(b.alert_id, "rule disabled", 101),
    ]
    assert m == Machine()


class AlertMachine(RuleBasedStateMachine):
    """Random points and clock ticks; the invariants every alert must keep."""

    def __init__(self) -> None:
        super().__init__()
        self.p = Params.of(make_rule(threshold_value=90, clear_threshold=80, trigger_count=2, evaluation_window=60,
                                     cooldown_minutes=5, auto_resolve_timeout=300), lateness_s=120)  # fmt: skip
        self.m = Machine()
        self.event = 0.0
        self.wall = 0.0
        self.open: str | None = None
        self.breaches: list[float] = []  # event times of evaluated breaches since the last alert
        self.last_breach_wall: float | None = None
        self.cooldown_until: float | None = None  # set while the model knows a cooldown runs

    def _apply(self, out: list, holds_before: bool) -> None:
        for t in out:
            if isinstance(t, Opened) and t.kind == "threshold":
                assert self.open is None, "two open alerts for one (rule, device)"
                if self.cooldown_until is not None:
                    assert self.wall >= self.cooldown_until, "an alert opened during cooldown"
                    assert holds_before, "reopened after cooldown though the condition no longer held"
                else:
                    newest = self.m.newest_event
                    in_window = [b for b in self.breaches if b > newest - self.p.window_s]
                    assert len(in_window) >= self.p.trigger_count, "opened without trigger_count breaches"
                self.open, self.breaches, self.cooldown_until = t.alert_id, [], None
                self.last_breach_wall = self.wall
            elif isinstance(t, Closed) and t.alert_id == self.open:
                assert t.reason.startswith("auto-resolved")
                assert self.last_breach_wall is not None
                assert self.wall - self.last_breach_wall >= self.p.auto_resolve_timeout_s
                self.open, self.cooldown_until = None, self.wall + self.p.cooldown_s
        if self.cooldown_until is not None and self.m.phase is not Phase.COOLDOWN and self.open is None:
            assert self.wall >= self.cooldown_until, "cooldown ended early"
            self.cooldown_until = None

    @rule(value=st.sampled_from([50, 79, 80, 85, 90, 91, 99]), de=st.integers(-150, 60), dw=st.integers(0, 120))
    def point(self, value: int, de: int, dw: int) -> None:
        event = self.event + de
        self.wall += dw
        before, holds_before = self.m.phase, self.m.condition_holds
        late = self.m.newest_event is not None and event < self.m.newest_event - self.p.lateness_s
        if value > 90 and not late:
            self.breaches.append(event)
        out = on_point(self.m, self.p, ident="r|d", key=f"{self.wall}", value=value, event_time=event, now=self.wall)
        if late:
            assert out == []
            return
        self.event = max(self.event, event)
        self._apply(out, holds_before)
        if value > 90 and self.open is not None:
            self.last_breach_wall = self.wall
        if before is Phase.FIRING and self.m.phase is Phase.RECOVERING:
            assert value <= 80, "recovered without passing the clear threshold (hysteresis)"
        if before in (Phase.FIRING, Phase.RECOVERING) and value > 90 and not out:
            assert self.m.phase is Phase.FIRING, "a breach while recovering must return to firing"

    @rule(dw=st.integers(0, 4000))
    def tick(self, dw: int) -> None:
        self.wall += dw
        self._apply(on_tick(self.m, self.p, ident="r|d", now=self.wall), self.m.condition_holds)

    @precondition(lambda self: self.open is not None)
    @rule()
    def operator_resolves(self) -> None:
        assert self.open is not None
        on_manual_resolve(self.m, self.p, alert_id=self.open, now=self.wall)
        self.open, self.cooldown_until = None, self.wall + self.p.cooldown_s

    @invariant()
    def alert_slot_matches_phase(self) -> None:
        assert (self.m.alert_id is not None) == (self.m.phase in (Phase.FIRING, Phase.RECOVERING))
        assert self.m.alert_id == self.open


TestAlertMachine = AlertMachine.TestCase
TestAlertMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
