"""How long a supervisor waits before restarting a process that exited: pure, no clock of its own."""

from dataclasses import dataclass


@dataclass
class RestartBackoff:
    """Exponential back-off (``initial_s``, doubling, capped at ``max_s``) between restarts.

    A process that stayed up at least ``healthy_after_s`` before it exited is treated as healthy
    again: its next restart waits ``initial_s``, not the delay its earlier crashes built up.
    Times are whatever monotonic clock the caller uses.
    """

    initial_s: float = 1.0
    max_s: float = 30.0
    healthy_after_s: float = 30.0
    failures: int = 0

    def delay_after_exit(self, started_at: float, exited_at: float) -> float:
        """Record an exit of a process started at ``started_at``; return the wait before restarting it."""
        if exited_at - started_at >= self.healthy_after_s:
            self.failures = 0
        return self.delay_after_failed_start()

    def delay_after_failed_start(self) -> float:
        """A restart attempt that failed outright (the process never came up): back off further."""
        delay = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 62))
        self.failures += 1
        return delay
