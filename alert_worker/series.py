"""One (metric, device)'s newest point, kept once for every quiet machine of it (pure).

Most (rule, device) machines do only bookkeeping with a point that does not breach their rule: those
"normal, nothing pending" (phase OK, no breach in the window), recovering (an open alert waiting for its
auto-resolve timeout or a new breach) or cooling down, with no no-data alert open and the condition not
holding at the newest point. Such a machine counts the point late (more than the lateness behind its
newest event), or notes the arrival time and, when the point is the newest, its event time and value;
a no-data rule's machine is also saved after every point. Every quiet machine of one (metric, device)
that has seen the same newest point does exactly the same with the same points, so ``Series`` does it
once per point for all of them, and a machine *parked* here stays out of the per-point loop. A parked
machine remembers the series' counters when it parked (``Mark``); ``settle`` adds what happened since,
so it equals, field for field, a machine that saw every point.

What still needs the machine itself wakes it (the evaluator): a point that may breach its rule, and the
time at which a point would auto-resolve its alert or end its cooldown (``Mark``'s due time).

A machine parks only when its newest event and value are the series' (it saw the series' newest point):
from then on both see the same points, so a point late for one is late for the other. One that is behind
(created by an out-of-order point, loaded from a checkpoint, re-enabled) stays in the loop until a newer
point brings it level.
"""

import math
from typing import Any

from telemetry_core.alerting.state_machine import Machine, Phase

Key = tuple[str, str]
# (late, fresh, moves) of the series when the machine parked or was last settled; when a point must wake it.
Mark = tuple[int, int, int, float]


class Series:
    """The newest point of one (metric, device), counters of what its points did, its parked machines."""

    __slots__ = ("due", "fresh", "late", "moves", "newest", "nodata", "parked", "value", "wall")

    def __init__(self) -> None:
        self.newest: float | None = None  # event time of the newest point
        self.value: Any = None  # its value (the last to arrive, among points with that event time)
        self.wall: float | None = None  # arrival time of the last point that was not late
        self.late = 0  # points more than the lateness behind the newest when they came
        self.fresh = 0  # points that were not late
        self.moves = 0  # times newest / value were set
        self.parked: dict[str, Mark] = {}  # rule id → its machine's mark
        self.due = math.inf  # no later than the earliest due time of a parked machine
        self.nodata: set[Key] = set()  # parked machines of no-data rules: saved after every point

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

    def level_with(self, m: Machine) -> bool:
        """Whether ``m`` saw this series' newest point (its newest event and value are the series')."""
        return m.newest_event is not None and m.newest_event == self.newest and m.last_value is self.value

    def park(self, rule_id: str, due: float, no_data_key: Key | None) -> None:
        """Take the machine of ``rule_id`` out of the per-point loop; a point at ``due`` or later wakes it."""
        self.parked[rule_id] = (self.late, self.fresh, self.moves, due)
        self.due = min(self.due, due)
        if no_data_key is not None:
            self.nodata.add(no_data_key)

    def unpark(self, key: Key, m: Machine) -> None:
        """Settle parked machine ``m`` (of ``key``) and forget it (``self.due`` may stay early: harmless)."""
        self.settle(m, self.parked.pop(key[0]))
        self.nodata.discard(key)

    def settle(self, m: Machine, mark: Mark) -> None:
        """Apply to parked ``m`` what the points since ``mark`` did to it (none of them breached its rule)."""
        late, fresh, moves, _ = mark
        m.late_points += self.late - late
        if self.fresh != fresh:
            m.last_seen_wall = self.wall
        if self.moves != moves:
            # Not a breach, or the machine would have been woken for it: the condition does not hold.
            m.newest_event, m.last_value, m.condition_holds = self.newest, self.value, False

    def catch_up(self, rule_id: str, m: Machine) -> None:
        """Settle parked ``m`` (of ``rule_id``) and keep it parked, from now on."""
        mark = self.parked[rule_id]
        self.settle(m, mark)
        self.parked[rule_id] = (self.late, self.fresh, self.moves, mark[3])

    def overdue(self, now: float) -> list[str]:
        """Rule ids of parked machines due by ``now``; ``due`` becomes the earliest of the others."""
        out = [rule_id for rule_id, mark in self.parked.items() if mark[3] <= now]
        self.due = min((mark[3] for rule_id, mark in self.parked.items() if mark[3] > now), default=math.inf)
        return out


def quiet(m: Machine) -> bool:
    """Whether a point that does not breach its rule only does bookkeeping on ``m`` (until its due time)."""
    if m.nodata_alert_id is not None or m.condition_holds:
        return False
    if m.phase is Phase.OK:
        return not m.breaches
    return m.phase is Phase.RECOVERING or m.phase is Phase.COOLDOWN
