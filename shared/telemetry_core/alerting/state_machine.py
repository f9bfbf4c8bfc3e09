"""One alert state machine per (rule, device): OK → PENDING → FIRING → RECOVERING → COOLDOWN (pure).

Points move it on event time (the breach window) and arrival time (timeouts); a clock tick moves
it on arrival time alone. Every call returns the transitions to publish. Alert ids are derived from
the input that opened them, so re-running the same inputs after a crash yields the same ids.
"""

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from telemetry_core.alerting.conditions import holds
from telemetry_schemas.enums import Comparison
from telemetry_schemas.rules import RuleSpec


class Phase(StrEnum):
    """Where a machine is."""

    OK = "ok"
    PENDING = "pending"  # breaches seen, fewer than trigger_count inside the window
    FIRING = "firing"
    RECOVERING = "recovering"  # value past the clear threshold; resolves after the timeout
    COOLDOWN = "cooldown"  # after a resolve: no new alert opens until it ends


@dataclass(frozen=True)
class Params:
    """The parts of a rule the machine needs, in seconds."""

    condition: Comparison
    threshold: Any
    clear_threshold: Any
    window_s: float
    trigger_count: int
    cooldown_s: float
    auto_resolve: bool
    auto_resolve_timeout_s: float
    no_data_for_s: float | None
    lateness_s: float

    @classmethod
    def of(cls, rule: RuleSpec, lateness_s: float = 300.0) -> "Params":
        """Params of ``rule``; points more than ``lateness_s`` behind the newest are not evaluated."""
        clear = rule.threshold_value if rule.clear_threshold is None else rule.clear_threshold
        return cls(
            condition=rule.condition,
            threshold=rule.threshold_value,
            clear_threshold=clear,
            window_s=float(rule.evaluation_window),
            trigger_count=rule.trigger_count,
            cooldown_s=rule.cooldown_minutes * 60.0,
            auto_resolve=rule.auto_resolve,
            auto_resolve_timeout_s=float(rule.auto_resolve_timeout),
            no_data_for_s=None if rule.no_data_for is None else float(rule.no_data_for),
            lateness_s=lateness_s,
        )


class Machine(msgspec.Struct, kw_only=True):
    """The state, serialisable so that the engine can checkpoint it."""

    phase: Phase = Phase.OK
    breaches: list[float] = []  # event times of breaches inside the window (PENDING)
    alert_id: str | None = None
    last_breach_wall: float | None = None
    cooldown_until: float | None = None
    condition_holds: bool = False  # at the newest point
    last_value: Any = None
    newest_event: float | None = None
    last_seen_wall: float | None = None
    nodata_alert_id: str | None = None
    late_points: int = 0


@dataclass(frozen=True)
class Opened:
    """An alert opens."""

    alert_id: str
    kind: str  # "threshold" or "no_data"
    value: Any
    event_time: float
    wall: float


@dataclass(frozen=True)
class Closed:
    """An alert resolves, by the system."""

    alert_id: str
    reason: str
    wall: float


Transition = Opened | Closed


def alert_id(ident: str, kind: str, key: str) -> str:
    """Deterministic alert id from (rule and device, kind, the input that opened it)."""
    return "alt_" + hashlib.blake2b(f"{ident}|{kind}|{key}".encode(), digest_size=10).hexdigest()


def _open(m: Machine, ident: str, key: str, value: Any, event_time: float, now: float) -> Opened:
    m.phase = Phase.FIRING
    m.alert_id = alert_id(ident, "threshold", key)
    m.last_breach_wall = now
    m.breaches = []
    return Opened(m.alert_id, "threshold", value, event_time, now)


def _due(m: Machine, p: Params, now: float, ident: str, *, with_no_data: bool) -> list[Transition]:
    """Transitions that time alone brings about."""
    out: list[Transition] = []
    if (
        m.phase is Phase.RECOVERING
        and p.auto_resolve
        and m.last_breach_wall is not None
        and now - m.last_breach_wall >= p.auto_resolve_timeout_s
    ):
        assert m.alert_id is not None
        out.append(Closed(m.alert_id, f"auto-resolved: no breach for {p.auto_resolve_timeout_s:.0f}s", now))
        m.phase, m.alert_id, m.cooldown_until = Phase.COOLDOWN, None, now + p.cooldown_s
    if m.phase is Phase.COOLDOWN and m.cooldown_until is not None and now >= m.cooldown_until:
        ended, m.cooldown_until = m.cooldown_until, None
        if m.condition_holds:
            # The problem outlasted the cooldown: open a new alert rather than lose it silently.
            out.append(_open(m, ident, f"reopen:{ended!r}", m.last_value, now, now))
        else:
            m.phase, m.breaches = Phase.OK, []
    if (
        with_no_data
        and p.no_data_for_s is not None
        and m.nodata_alert_id is None
        and m.last_seen_wall is not None
        and now - m.last_seen_wall >= p.no_data_for_s
    ):
        m.nodata_alert_id = alert_id(ident, "no_data", repr(m.last_seen_wall))
        out.append(Opened(m.nodata_alert_id, "no_data", None, m.last_seen_wall, now))
    return out


def on_point(
    m: Machine, p: Params, *, ident: str, key: str, value: Any, event_time: float, now: float
) -> list[Transition]:
    """Feed one point (event time and arrival time in epoch seconds); ``key`` names it uniquely."""
    if m.newest_event is not None and event_time < m.newest_event - p.lateness_s:
        m.late_points += 1  # stored, but too late to fire or resolve anything
        return []
    out = _due(m, p, now, ident, with_no_data=False)
    m.last_seen_wall = now
    if m.nodata_alert_id is not None:
        out.append(Closed(m.nodata_alert_id, "data resumed", now))
        m.nodata_alert_id = None
    breach = holds(p.condition, value, p.threshold)
    if m.newest_event is None or event_time >= m.newest_event:
        m.newest_event, m.condition_holds, m.last_value = event_time, breach, value
    horizon = m.newest_event - p.window_s
    match m.phase:
        case Phase.OK | Phase.PENDING:
            if m.breaches:
                m.breaches = [t for t in m.breaches if t > horizon]
            if breach and event_time > horizon:
                m.breaches.append(event_time)
            if len(m.breaches) >= p.trigger_count:
                out.append(_open(m, ident, key, value, event_time, now))
            else:
                m.phase = Phase.PENDING if m.breaches else Phase.OK
        case Phase.FIRING:
            if breach:
                m.last_breach_wall = now
            elif not holds(p.condition, value, p.clear_threshold):  # passed the clear threshold
                m.phase = Phase.RECOVERING
        case Phase.RECOVERING:
            if breach:
                m.phase, m.last_breach_wall = Phase.FIRING, now  # same alert, no new one
        case Phase.COOLDOWN:
            pass
    return out


def on_tick(m: Machine, p: Params, *, ident: str, now: float) -> list[Transition]:
    """Advance time: auto-resolve, cooldown end, no-data."""
    return _due(m, p, now, ident, with_no_data=True)


def on_manual_resolve(m: Machine, p: Params, *, alert_id: str, now: float) -> None:
    """An operator resolved an alert of this machine: cooldown starts (nothing to publish)."""
    if m.alert_id == alert_id:
        m.phase, m.alert_id, m.cooldown_until = Phase.COOLDOWN, None, now + p.cooldown_s
    elif m.nodata_alert_id == alert_id:
        m.nodata_alert_id, m.last_seen_wall = None, now


def close_all(m: Machine, reason: str, now: float) -> list[Transition]:
    """Resolve whatever is open (rule disabled or deleted) and forget the state."""
    out: list[Transition] = [Closed(a, reason, now) for a in (m.alert_id, m.nodata_alert_id) if a is not None]
    fresh = Machine()
    for field in m.__struct_fields__:
        setattr(m, field, getattr(fresh, field))
    return out
