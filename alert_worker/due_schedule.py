"""When each machine next has something for the clock tick to do, so a tick visits only those (pure).

``state_machine.on_tick`` changes a machine only at three moments: a RECOVERING alert's auto-resolve
timeout, the end of a cooldown, and a no-data rule's silence. ``deadline`` computes the earliest of them
for a machine as it is now; ``DueSchedule`` keeps one heap entry per machine at (a little before) that
time. Entries are never moved: a machine whose deadline came earlier gets a new entry and the old one is
ignored when it surfaces; one whose deadline moved later (a no-data machine that saw a point) is visited
when its old entry surfaces, finds nothing due, and is scheduled again. A tick may thus visit a machine
early — harmless, it runs the very same per-machine code, which decides — but never misses one.
"""

import heapq
import math

from telemetry_core.alerting.state_machine import Machine, Params, Phase

Key = tuple[str, str]
# Entries surface this much before the computed deadline: ``_due`` compares ``now - a >= b``, which rounding
# may make true a hair before ``now >= a + b``.
EARLY_S = 1e-3


def deadline(m: Machine, p: Params, *, with_no_data: bool = True) -> float:
    """The earliest wall time at which ``on_tick`` may change ``m`` (inf: never, until a point or a resolve).

    ``with_no_data=False``: at which ``on_point`` may (a point never opens a no-data alert).
    """
    d = math.inf
    if m.phase is Phase.RECOVERING and p.auto_resolve and m.last_breach_wall is not None:
        d = m.last_breach_wall + p.auto_resolve_timeout_s
    if m.phase is Phase.COOLDOWN and m.cooldown_until is not None:
        d = min(d, m.cooldown_until)
    if with_no_data and p.no_data_for_s is not None and m.nodata_alert_id is None and m.last_seen_wall is not None:
        d = min(d, m.last_seen_wall + p.no_data_for_s)
    return d


class DueSchedule:
    """A heap of (time, machine key); ``due`` pops the machines whose time has come."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, Key]] = []
        self._at: dict[Key, float] = {}  # the live (earliest) entry of each scheduled machine

    def __len__(self) -> int:
        return len(self._at)

    def want(self, key: Key, at: float) -> None:
        """Make sure ``key`` surfaces no later than ``at`` (a no-op if it already does)."""
        if at == math.inf:
            return
        at -= EARLY_S
        if at < self._at.get(key, math.inf):
            self._at[key] = at
            heapq.heappush(self._heap, (at, key))

    def drop(self, key: Key) -> None:
        """Forget ``key`` (its machine is gone); its heap entries are skipped when they surface."""
        self._at.pop(key, None)

    def due(self, now: float) -> list[Key]:
        """Pop and return the machines scheduled at or before ``now`` (they must be scheduled again if need be)."""
        heap, at, out = self._heap, self._at, []
        while heap and heap[0][0] <= now:
            t, key = heapq.heappop(heap)
            if at.get(key) == t:
                del at[key]
                out.append(key)
        return out
