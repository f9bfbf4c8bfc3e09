"""Restart back-off of `telemetry run`: doubling, capped, and back to the start after a healthy run."""

from dataclasses import dataclass, field

from telemetry_core.restart_backoff import RestartBackoff
from telemetry_core.supervisor import Supervisor


def crash_loop(backoff: RestartBackoff, uptimes: list[float]) -> list[float]:
    """Delays chosen for a process that ran ``uptimes[i]`` seconds before its i-th exit."""
    now, delays = 0.0, []
    for uptime in uptimes:
        started, now = now, now + uptime
        delays.append(backoff.delay_after_exit(started, now))
        now += delays[-1]
    return delays


def test_quick_crashes_double_up_to_the_cap() -> None:
    assert crash_loop(RestartBackoff(), [0.1] * 8) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_healthy_period_resets_the_delay() -> None:
    # Five quick crashes, then one after 30 s up: the next wait is 1 s again, then it doubles anew.
    assert crash_loop(RestartBackoff(), [0.1] * 5 + [30.0, 0.1, 0.1]) == [1, 2, 4, 8, 16, 1, 2, 4]


def test_a_run_just_short_of_healthy_does_not_reset() -> None:
    assert crash_loop(RestartBackoff(healthy_after_s=30.0), [0.1, 0.1, 29.9]) == [1, 2, 4]


def test_failed_starts_keep_backing_off() -> None:
    backoff = RestartBackoff(initial_s=0.5, max_s=3.0)
    assert [backoff.delay_after_failed_start() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.delay_after_exit(0.0, 100.0) == 0.5  # ran healthily: starts over


@dataclass
class FakeUnit:
    """A process stand-in for the supervisor's bookkeeping (the real processes are in tests/e2e)."""

    name: str
    code: int | None = None
    fail_starts: int = 0
    starts: int = 0

    def exit_code(self) -> int | None:
        return self.code

    def restart(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("port busy")
        self.starts += 1
        self.code = None


@dataclass
class Clock:
    now: float = 0.0
    log: list[str] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now


def test_supervisor_logs_exit_restarts_after_delay_and_resets_after_healthy_run() -> None:
    clock, unit = Clock(), FakeUnit("nats-server")
    sup = Supervisor([unit], clock.log.append, clock=clock)
    unit.code = -9
    sup.check()
    assert clock.log == ["nats-server exited with -9; restarting in 1s"]
    clock.now = 0.9
    sup.check()
    assert unit.starts == 0  # not before the delay
    clock.now = 1.0
    sup.check()
    assert (unit.starts, clock.log[-1]) == (1, "nats-server restarted")
    unit.code, clock.now = 1, 1.5  # crashed again at once: 2 s
    sup.check()
    assert clock.log[-1] == "nats-server exited with 1; restarting in 2s"
    clock.now = 3.5
    sup.check()
    unit.code, clock.now = 1, 40.0  # up 36.5 s: healthy, back to 1 s
    sup.check()
    assert clock.log[-1] == "nats-server exited with 1; restarting in 1s"


def test_supervisor_retries_a_failed_restart_with_growing_delay() -> None:
    clock, unit = Clock(), FakeUnit("postgres", code=-9, fail_starts=2)
    sup = Supervisor([unit], clock.log.append, clock=clock)
    for now in (0.0, 1.0, 3.0, 7.0):
        clock.now = now
        sup.check()
    assert clock.log == [
        "postgres exited with -9; restarting in 1s",
        "postgres did not start again: port busy; next try in 2s",
        "postgres did not start again: port busy; next try in 4s",
        "postgres restarted",
    ]
    assert unit.starts == 1
