"""The indexed and the naive alert evaluator side by side over one RuleBook, compared after every step.

Used by the deterministic parking tests (tests/unit/test_alert_idle_machines.py, test_alert_open_parking.py):
each step feeds both alike and checks that they emitted the same transitions and hold the same machines
(parked ones settled), changed keys and late-point count.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import structlog

from alert_worker.emitter import Emitted
from alert_worker.evaluator import Evaluator
from alert_worker.rules import RuleBook
from telemetry_schemas.events import AlertRuleCreated
from telemetry_schemas.rules import RuleSpec
from telemetry_schemas.values import Point
from tests.support.naive_evaluator import NaiveEvaluator

LOG = structlog.get_logger().bind(test="alert-pair")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WALL0 = 2_000_000.0
LATENESS = 120.0


def save_both(indexed: Evaluator, naive: NaiveEvaluator) -> None:
    """A commit of both evaluators: the indexed one's changed machines, settled, are written as the naive ones are."""
    indexed.settle(indexed.changed)
    assert {k: indexed.machines.get(k) for k in indexed.changed} == {k: naive.machines.get(k) for k in naive.changed}
    indexed.changed.clear()
    naive.changed.clear()


class Pair:
    """The indexed and the naive evaluator over one RuleBook, fed alike and compared after every step."""

    def __init__(self, *specs: dict[str, Any]) -> None:
        self.book = RuleBook()
        for i, spec in enumerate(specs):
            base = {"name": f"r{i}", "metric_name": "temp", "condition": ">", "threshold_value": 50}
            rule = msgspec.convert(base | spec, RuleSpec)
            self.book._apply(AlertRuleCreated(rule_id=f"r{i:03d}", rule=rule, at=T0, by="t"), i + 1)
        self.indexed = Evaluator(self.book, {}, LATENESS, LOG)
        self.naive = NaiveEvaluator(self.book, {}, LATENESS, LOG)
        self.n = 0

    def points(self, wall: float, *pts: tuple[float, Any], device: str = "d0", tags: dict[str, str] | None = None,
               ) -> list[object]:  # fmt: skip
        """Points (event seconds after T0, value) of metric temp; the transitions both emitted."""
        batch = []
        for at, value in pts:
            self.n += 1
            point = Point(timestamp=T0 + timedelta(seconds=at), metric_name="temp", value=value, tags=tags or {})
            batch.append((f"k{self.n}", point))
        return self._same(
            self.indexed.points(device, batch, WALL0 + wall), self.naive.points(device, batch, WALL0 + wall)
        )

    def tick(self, wall: float) -> list[object]:
        return self._same(self.indexed.tick(WALL0 + wall), self.naive.tick(WALL0 + wall))

    def save(self) -> None:
        """What the engine does at a commit: settle the changed machines, write them, clear ``changed``."""
        save_both(self.indexed, self.naive)

    def _same(self, indexed: list[Emitted], naive: list[Emitted]) -> list[object]:
        def view(emitted: list[Emitted]) -> list[tuple[str, str, object]]:
            return [(e.rule.rule_id, e.device_id, e.transition) for e in emitted]

        assert view(indexed) == view(naive)
        assert self.indexed.snapshot() == self.naive.machines
        assert self.indexed.changed == self.naive.changed
        assert self.indexed.late_points == self.naive.late_points
        return [e.transition for e in naive]
