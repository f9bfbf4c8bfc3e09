"""One (metric, device)'s newest event time, kept once for every idle machine of it (pure).

A (rule, device) machine in the "normal, nothing pending" state (phase OK, no breach in its window, no
alert, no cooldown, not a no-data rule, no tag filter) does only bookkeeping with a point that does not
breach its rule: it counts the point late (more than the lateness behind its newest event), or notes the
arrival time and, when the point is the newest, its event time and value. Every such machine of one
(metric, device) that has seen the same newest point does exactly the same bookkeeping with the same
points, so ``Series`` does it once per point for all of them, and a machine *parked* here stays out of the
per-point loop. A parked machine remembers the series' counters when it parked (``Mark``); ``settle`` adds
what happened since to the machine, so it equals, field for field, a machine that saw every point.

A machine parks only when its newest event and value are the series' (it saw the series' newest point):
from then on both see the same points, so a point late for one is late for the other. One that is behind
(created by an out-of-order point, loaded from a checkpoint, re-enabled) stays in the loop until a newer
point brings it level.
"""

from typing import Any

from telemetry_core.alerting.state_machine import Machine, Phase

# (late, fresh, moves) of the series when the machine parked or was last settled.
Mark = tuple[int, int, int]


class Series:
    """The newest point of one (metric, device) and counters of what its points did; parked rule ids."""

    __slots__ = ("fresh", "late", "moves", "newest", "parked", "value", "wall")

    def __init__(self) -> None:
        self.newest: float | None = None  # event time of the newest point
        self.value: Any = None  # its value (the last to arrive, among points with that event time)
        self.wall: float | None = None  # arrival time of the last point that was not late
        self.late = 0  # points more than the lateness behind the newest when they came
        self.fresh = 0  # points that were not late
        self.moves = 0  # times newest / value were set
        self.parked: dict[str, Mark] = {}  # rule id → its machine's mark

    def see(self, when: float, value: Any, now: float, lateness_s: float) -> None:
        """Account one point, exactly as ``state_machine.on_point`` does for a machine's bookkeeping."""
        newest = self.newest
        if newest is not None and when < newest - lateness_s:
            self.late += 1
            return
        self.wall = now
        self.fresh += 1
        if newest is None or when >= newest:
            self.newest, self.value = when, value
            self.moves += 1

    def mark(self) -> Mark:
        """The counters now: what a machine parking (or just settled) has already accounted."""
        return (self.late, self.fresh, self.moves)

    def level_with(self, m: Machine) -> bool:
        """Whether ``m`` saw this series' newest point (its newest event and value are the series')."""
        return m.newest_event is not None and m.newest_event == self.newest and m.last_value is self.value

    def settle(self, m: Machine, mark: Mark) -> None:
        """Apply to parked ``m`` what the points since ``mark`` did to it (none of them breached its rule)."""
        late, fresh, moves = mark
        m.late_points += self.late - late
        if self.fresh != fresh:
            m.last_seen_wall = self.wall
        if self.moves != moves:
            # Not a breach, or the machine would have been woken for it: the condition does not hold.
            m.newest_event, m.last_value, m.condition_holds = self.newest, self.value, False


def idle(m: Machine) -> bool:
    """Whether a point that does not breach its rule only does bookkeeping on ``m`` (see the module doc)."""
    return (
        m.phase is Phase.OK
        and not m.breaches
        and m.alert_id is None
        and m.nodata_alert_id is None
        and m.cooldown_until is None
        and not m.condition_holds
    )
