"""Restart what `telemetry run` started when it exits: workers, the gateway and the embedded servers.

Every process is started from the thread that calls ``Supervisor.run`` (the main thread of
`telemetry run`), because the parent-death signal the children carry fires when the thread that
forked them exits (see ``pdeathsig``). Polling each child's ``Popen`` also reaps it, so a killed
server does not linger as a zombie whose PID keeps its lock files looking alive.
"""

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psycopg

from telemetry_core.embedded import EmbeddedServer
from telemetry_core.pdeathsig import die_with_parent
from telemetry_core.restart_backoff import RestartBackoff


class Supervised(Protocol):
    """A process the supervisor keeps running."""

    @property
    def name(self) -> str:
        """What the log calls it."""

    def exit_code(self) -> int | None:
        """The exit code once the process has exited (reaping it), else None."""

    def restart(self) -> None:
        """Start it again; raise RuntimeError/OSError if it cannot be started."""


@dataclass
class Child:
    """A worker or gateway process whose output is relayed with its name as prefix."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process and a thread that relays its output.

        Own session: a Ctrl-C in the terminal reaches only `telemetry run`, which stops its
        children in order. SIGKILL when `telemetry run` dies: nobody is left to stop them in
        order, and an ack only follows a commit, so a killed worker loses nothing.
        """
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )  # fmt: skip
        self.pump = threading.Thread(target=self._relay, args=(self.proc,), daemon=True)
        self.pump.start()

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"{self.name:>18} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def exit_code(self) -> int | None:
        """The exit code once exited (reaped), else None."""
        return None if self.proc is None else self.proc.poll()

    def restart(self) -> None:
        """Start a new process for this child."""
        self.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after the timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class ServerUnit:
    """An embedded server as a supervised process: restarted on the same port, data and user."""

    server: EmbeddedServer

    @property
    def name(self) -> str:
        """The binary's name, as a user looking at `ps` would know it."""
        return "nats-server" if self.server.name == "nats" else self.server.name

    def exit_code(self) -> int | None:
        """The server's exit code once exited (reaped), else None."""
        return self.server.proc.poll()

    def restart(self) -> None:
        """Start the server again where clients already look for it."""
        self.server.restart()


@dataclass
class _Slot:
    unit: Supervised
    started_at: float
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    restart_at: float | None = None


class Supervisor:
    """Polls its units; logs an exit and restarts the unit after a back-off that resets once it ran healthily."""

    def __init__(
        self,
        units: list[Supervised],
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        backoff: Callable[[], RestartBackoff] = RestartBackoff,
    ) -> None:
        now = clock()
        self._slots = [_Slot(unit, now, backoff()) for unit in units]
        self._say = say
        self._clock = clock

    def run(self, stopping: threading.Event, interval_s: float = 0.5) -> None:
        """Check every ``interval_s`` until ``stopping`` is set."""
        while not stopping.wait(interval_s):
            self.check()

    def check(self) -> None:
        """One round: notice exits, restart what is due."""
        for slot in self._slots:
            now = self._clock()
            if slot.restart_at is None:
                code = slot.unit.exit_code()
                if code is None:
                    continue
                delay = slot.backoff.delay_after_exit(slot.started_at, now)
                self._say(f"{slot.unit.name} exited with {code}; restarting in {delay:.0f}s")
                slot.restart_at = now + delay
            elif now >= slot.restart_at:
                self._restart(slot)

    def _restart(self, slot: _Slot) -> None:
        try:
            slot.unit.restart()
        except (RuntimeError, OSError, psycopg.Error) as exc:
            delay = slot.backoff.delay_after_failed_start()
            self._say(f"{slot.unit.name} did not start again: {exc}; next try in {delay:.0f}s")
            slot.restart_at = self._clock() + delay
            return
        slot.started_at = self._clock()
        slot.restart_at = None
        self._say(f"{slot.unit.name} restarted")
