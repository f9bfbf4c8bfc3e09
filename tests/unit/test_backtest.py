"""The backtest: stored points through the pure state machine, on the data's own clock."""

from typing import Any

import pytest

from telemetry_core.alerting.backtest import Backtest, SimulatedAlert
from telemetry_schemas.enums import Comparison
from telemetry_schemas.rules import RuleSpec

T0 = 1_766_052_000.0  # 2025-12-18T10:00:00Z


def rule(**extra: Any) -> RuleSpec:
    fields: dict[str, Any] = {
        "name": "hot",
        "metric_name": "temperature",
        "condition": Comparison.GT,
        "threshold_value": 80,
    }
    return RuleSpec(**{**fields, **extra})


def run(
    spec: RuleSpec, points: list[tuple[str, float, Any]], end: float, tags: dict[str, str] | None = None
) -> tuple[Backtest, list[SimulatedAlert]]:
    test = Backtest(spec)
    for device, offset, value in points:
        test.feed(device, T0 + offset, value, tags)
    return test, test.finish(T0 + end)


def test_trigger_count_two_within_the_window_opens_one_alert_at_the_second_breach() -> None:
    test, alerts = run(
        rule(trigger_count=2, evaluation_window=300),
        [("d", 0, 81), ("d", 60, 50), ("d", 120, 90), ("d", 180, 95)],
        end=240,
    )
    assert [(a.device_id, a.kind, a.opened_at, a.value) for a in alerts] == [("d", "threshold", T0 + 120, 90)]
    assert alerts[0].alert_id.startswith("alt_")
    assert (alerts[0].resolved_at, alerts[0].resolve_reason) == (None, None)  # still open at end
    assert (test.points_evaluated, test.devices_evaluated) == (4, 1)


def test_breaches_further_apart_than_the_window_open_nothing() -> None:
    _, alerts = run(rule(trigger_count=2, evaluation_window=60), [("d", 0, 81), ("d", 61, 82), ("d", 122, 83)], end=200)
    assert alerts == []


def test_auto_resolve_falls_due_at_its_exact_moment_between_points() -> None:
    spec = rule(auto_resolve_timeout=300, cooldown_minutes=10)
    _, alerts = run(spec, [("d", 0, 90), ("d", 30, 85), ("d", 60, 70), ("d", 1000, 70)], end=2000)
    assert len(alerts) == 1
    # Last breach at +30: resolved 300 s later, although no point arrives then.
    assert alerts[0].resolved_at == pytest.approx(T0 + 330, abs=1e-6)
    assert alerts[0].resolve_reason == "auto-resolved: no breach for 300s"


def test_cooldown_holds_back_a_new_alert_then_reopens_if_the_problem_persists() -> None:
    spec = rule(auto_resolve_timeout=300, cooldown_minutes=5)
    points = [("d", 0, 90), ("d", 10, 70), ("d", 400, 95), ("d", 500, 96)]
    _, alerts = run(spec, points, end=1000)
    # Resolved at +300; breaches at +400 and +500 fall in the cooldown (until +600), which then ends
    # with the condition still holding: a new alert opens at +600.
    assert [a.opened_at for a in alerts] == [T0, pytest.approx(T0 + 600)]
    assert alerts[0].resolved_at == pytest.approx(T0 + 300)


def test_a_gap_opens_a_no_data_alert_that_data_resuming_closes() -> None:
    spec = rule(no_data_for=60)
    _, alerts = run(spec, [("d", 0, 10), ("d", 30, 10), ("d", 300, 10)], end=320)
    assert [(a.kind, a.opened_at, a.resolved_at, a.resolve_reason) for a in alerts] == [
        ("no_data", pytest.approx(T0 + 90), T0 + 300, "data resumed")
    ]


def test_devices_have_their_own_machines() -> None:
    _, alerts = run(rule(trigger_count=2), [("a", 0, 90), ("b", 1, 90), ("b", 2, 91), ("a", 3, 10)], end=10)
    assert [(a.device_id, a.opened_at) for a in alerts] == [("b", T0 + 2)]


@pytest.mark.parametrize(
    ("targeting", "tags", "evaluated"),
    [
        ({"device_ids": ["a"]}, None, 1),
        ({"device_tags": {"site": "x"}}, {"site": "x"}, 2),
        ({"device_tags": {"site": "x"}}, {"site": "y"}, 0),
        ({"device_groups": ["g1"]}, {"group": "g1"}, 2),
        ({"device_groups": ["g1"]}, None, 0),
    ],
)
def test_only_targeted_points_are_evaluated(
    targeting: dict[str, Any], tags: dict[str, str] | None, evaluated: int
) -> None:
    test, _ = run(rule(**targeting), [("a", 0, 1), ("b", 1, 1)], end=10, tags=tags)
    assert test.points_evaluated == evaluated


def test_equality_conditions_on_strings() -> None:
    _, alerts = run(rule(condition=Comparison.EQ, threshold_value="fault"), [("d", 0, "ok"), ("d", 1, "fault")], end=5)
    assert [(a.opened_at, a.value) for a in alerts] == [(T0 + 1, "fault")]
