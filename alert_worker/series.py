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

**Open machines** (an alert firing or recovering, of a rule with an ordered condition) may park too, with
``Levels``: a point moves such a machine only between FIRING and RECOVERING and sets its last breach time,
and which of these happened since the mark follows from two questions about the points since — the last
one that breached the rule, and the last one past its clear threshold. The series answers both in
O(log points) from two monotonic stacks of its values (``_Stacks``), kept while an open machine is parked:
the newest point above any bound is on the "high" stack (a later point at least as high replaces it), the
newest below any bound on the "low" one. Such a machine is not woken by its breaches (only by its due
time), so nothing tells the evaluator when its saved essentials change: it parks only while it is in the
evaluator's ``changed`` set (saved at the next commit anyway), and is woken when that set is cleared.
"""

import math
from bisect import bisect_left, bisect_right
from typing import Any

from telemetry_core.alerting.conditions import holds
from telemetry_core.alerting.state_machine import Machine, Phase
from telemetry_schemas.enums import Comparison

Key = tuple[str, str]
# (late, fresh, moves) of the series when the machine parked or was last settled; when a point must wake it.
Mark = tuple[int, int, int, float]
# An open machine's rule for the stacks: (breach query, its bound, past-clear query, its bound, condition,
# threshold). A query names the stack and the comparison: "gt" = the last value > bound, etc.
Levels = tuple[str, float, str, float, Comparison, Any]


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def levels_of(condition: Comparison, threshold: object, clear: object) -> Levels | None:
    """The stack queries of a rule's open machine, or None if its machine cannot park open.

    FIRING → RECOVERING needs a point that neither breaches nor holds the clear threshold: for ``>`` a value
    ``<= min(threshold, clear)`` (or not a number), for ``<`` one ``>= max(threshold, clear)``; and so on.
    Non-numeric or NaN thresholds (never / always met) stay with the per-point loop.
    """
    if not (_is_number(threshold) and _is_number(clear)) or threshold != threshold or clear != clear:
        return None
    t: float = threshold  # type: ignore[assignment]  # a number (int or float), checked above
    c: float = clear  # type: ignore[assignment]
    if condition is Comparison.GT:
        return ("gt", t, "le", min(t, c), condition, t)
    if condition is Comparison.GE:
        return ("ge", t, "lt", min(t, c), condition, t)
    if condition is Comparison.LT:
        return ("lt", t, "ge", max(t, c), condition, t)
    if condition is Comparison.LE:
        return ("le", t, "gt", max(t, c), condition, t)
    return None  # == and != compare as floats with their own overflow rules: not worth the special cases


class _Stacks:
    """The points since the oldest open mark that no later point outdoes, by value: high and low stacks.

    ``hi``: values strictly decreasing (kept negated, ascending, for ``bisect``), ``lo``: strictly increasing;
    each entry has the point's index (the series' ``fresh`` count) and arrival time. ``odd``: the index of
    the last point that is no number (or NaN): it breaches no ordered rule and is past every clear threshold.
    """

    __slots__ = ("hi", "hi_at", "hi_wall", "lo", "lo_at", "lo_wall", "odd")

    def __init__(self) -> None:
        self.hi: list[Any] = []
        self.hi_at: list[int] = []
        self.hi_wall: list[float] = []
        self.lo: list[Any] = []
        self.lo_at: list[int] = []
        self.lo_wall: list[float] = []
        self.odd = 0

    def __len__(self) -> int:
        return len(self.hi) + len(self.lo)

    def push(self, value: Any, at: int, wall: float) -> int:
        """Add a (not late) point; the number of entries now."""
        kind = type(value)
        if not (kind is float or kind is int or (kind is not bool and _is_number(value))) or value != value:
            self.odd = at  # no number (or NaN): breaches no ordered rule, past every clear threshold
            return len(self.hi) + len(self.lo)
        hi, neg = self.hi, -value
        while hi and hi[-1] >= neg:  # an older value no higher than this one: never the last above a bound
            hi.pop()
            self.hi_at.pop()
            self.hi_wall.pop()
        hi.append(neg)
        self.hi_at.append(at)
        self.hi_wall.append(wall)
        lo = self.lo
        while lo and lo[-1] >= value:
            lo.pop()
            self.lo_at.pop()
            self.lo_wall.pop()
        lo.append(value)
        self.lo_at.append(at)
        self.lo_wall.append(wall)
        return len(hi) + len(lo)

    def last(self, query: str, bound: Any) -> tuple[int, float | None]:
        """(index, arrival time) of the last point whose value meets ``query`` against ``bound``; (0, None): none."""
        if query == "gt":
            k = bisect_left(self.hi, -bound)  # entries with value > bound: a prefix of the high stack
            return (self.hi_at[k - 1], self.hi_wall[k - 1]) if k else (0, None)
        if query == "ge":
            k = bisect_right(self.hi, -bound)
            return (self.hi_at[k - 1], self.hi_wall[k - 1]) if k else (0, None)
        if query == "lt":
            k = bisect_left(self.lo, bound)  # entries with value < bound: a prefix of the low stack
            return (self.lo_at[k - 1], self.lo_wall[k - 1]) if k else (0, None)
        k = bisect_right(self.lo, bound)  # "le"
        return (self.lo_at[k - 1], self.lo_wall[k - 1]) if k else (0, None)


class Series:
    """The newest point of one (metric, device), counters of what its points did, its parked machines."""

    __slots__ = ("due", "fresh", "generation", "late", "moves", "newest", "nodata", "opened", "parked", "stacks",
                 "value", "wall")  # fmt: skip

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
        self.opened: dict[str, Levels] = {}  # the parked open machines (also in ``parked``): their rules' levels
        self.stacks: _Stacks | None = None  # kept while ``opened`` is not empty
        self.generation = -1  # of the evaluator's ``changed`` set when the open machines parked

    def see(self, when: float, value: Any, now: float, lateness_s: float) -> int:
        """Account one point, exactly as ``state_machine.on_point`` does for a machine's bookkeeping.

        Returns the number of entries in the value stacks (0 without open machines).
        """
        newest = self.newest
        if newest is not None and when < newest - lateness_s:
            self.late += 1
            return 0
        self.wall = now
        self.fresh += 1
        if newest is None or when >= newest:
            self.newest, self.value = when, value
            self.moves += 1
        if self.stacks is not None:
            return self.stacks.push(value, self.fresh, now)
        return 0

    def level_with(self, m: Machine) -> bool:
        """Whether ``m`` saw this series' newest point (its newest event and value are the series')."""
        return m.newest_event is not None and m.newest_event == self.newest and m.last_value is self.value

    def park(self, rule_id: str, due: float, no_data_key: Key | None, levels: Levels | None = None) -> None:
        """Take the machine of ``rule_id`` out of the per-point loop; a point at ``due`` or later wakes it.

        ``levels``: it is an open machine (FIRING or RECOVERING), settled from the stacks.
        """
        self.parked[rule_id] = (self.late, self.fresh, self.moves, due)
        self.due = min(self.due, due)
        if no_data_key is not None:
            self.nodata.add(no_data_key)
        if levels is not None:
            self.opened[rule_id] = levels
            if self.stacks is None:
                self.stacks = _Stacks()

    def unpark(self, key: Key, m: Machine) -> None:
        """Settle parked machine ``m`` (of ``key``) and forget it (``self.due`` may stay early: harmless)."""
        self.settle(m, key[0])
        del self.parked[key[0]]
        self.nodata.discard(key)
        if self.opened and self.opened.pop(key[0], None) is not None and not self.opened:
            self.stacks = None

    def settle(self, m: Machine, rule_id: str) -> None:
        """Apply to parked ``m`` (of ``rule_id``) what the points since its mark did to it."""
        late, fresh, moves, _ = self.parked[rule_id]
        m.late_points += self.late - late
        if self.fresh == fresh:
            return
        m.last_seen_wall = self.wall
        levels = self.opened.get(rule_id) if self.opened else None
        if levels is None:
            if self.moves != moves:
                # Not a breach, or the machine would have been woken for it: the condition does not hold.
                m.newest_event, m.last_value, m.condition_holds = self.newest, self.value, False
            return
        if self.moves != moves:
            m.newest_event, m.last_value = self.newest, self.value
            m.condition_holds = holds(levels[4], self.value, levels[5])
        stacks = self.stacks
        assert stacks is not None
        breach, breach_wall = stacks.last(levels[0], levels[1])
        past_clear = max(stacks.last(levels[2], levels[3])[0], stacks.odd)
        breach = breach if breach > fresh else 0
        past_clear = past_clear if past_clear > fresh else 0
        if breach > past_clear:  # the last of them breached: firing, since that point
            m.phase, m.last_breach_wall = Phase.FIRING, breach_wall
        elif past_clear:  # a point past the clear threshold after any breach: recovering
            m.phase = Phase.RECOVERING
            if breach:
                m.last_breach_wall = breach_wall

    def restack(self) -> None:
        """Start the value stacks afresh (every open machine was just settled: older points no longer matter)."""
        self.stacks = _Stacks() if self.opened else None

    def catch_up(self, rule_id: str, m: Machine) -> None:
        """Settle parked ``m`` (of ``rule_id``) and keep it parked, from now on."""
        self.settle(m, rule_id)
        self.parked[rule_id] = (self.late, self.fresh, self.moves, self.parked[rule_id][3])

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


def open_quiet(m: Machine) -> bool:
    """Whether ``m`` is an open machine a point moves only between FIRING and RECOVERING (its rule permitting)."""
    return m.nodata_alert_id is None and m.alert_id is not None and (m.phase is Phase.FIRING or
                                                                     m.phase is Phase.RECOVERING)  # fmt: skip
