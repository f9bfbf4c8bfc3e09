"""PID files and lock files a server left in its data directory: tell a stale one from a live one.

A server killed hard leaves its PID file behind (nats-server.pid, PostgreSQL's postmaster.pid
and socket lock ``.s.PGSQL.<port>.lock``). PostgreSQL refuses to start while the PID in its lock
names a process that exists; a zombie (a dead child its parent has not reaped yet, or one
re-parented to an init that never reaps) still "exists" for ``kill(pid, 0)``. We remove a lock
only when its PID is gone or a zombie, and stop the process it names only when that process is
verifiably a server on the same data directory (a stale server from an earlier run). A PID that
now belongs to anything else is left alone, and so is its lock file.
"""

import os
import signal
import time
from pathlib import Path


def read_pid(path: Path) -> int | None:
    """The PID on the first line of a PID/lock file, or None if there is no such file or number."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_is_gone(pid: int) -> bool:
    """True if no process has this PID, or it is a zombie (dead, holding nothing but its PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux) or it vanished just now: assume alive, the safe side
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state in ("Z", "X")


def runs_on(pid: int, marker: str) -> bool:
    """True if process ``pid``'s command line has ``marker`` (a data path) as one of its arguments."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return marker.encode() in argv


def wait_gone(pid: int, timeout_s: float) -> bool:
    """Poll until ``pid`` is gone; False if it still runs after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not pid_is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_stale_server(pid_file: Path, marker: str, timeout_s: float = 15.0) -> None:
    """Stop a server an earlier run left running on our data (its PID in ``pid_file``, ``marker`` in its argv).

    SIGINT first (clean shutdown for both nats-server and PostgreSQL), SIGKILL after the timeout.
    A PID that is gone, or that names some other process, is not signalled.
    """
    pid = read_pid(pid_file)
    if pid is None or pid == os.getpid() or pid_is_gone(pid) or not runs_on(pid, marker):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    except PermissionError:
        raise RuntimeError(f"a server (pid {pid}) we cannot stop is using {pid_file.parent}") from None
    if not wait_gone(pid, timeout_s):
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5.0)


def remove_if_stale(lock_file: Path) -> bool:
    """Delete ``lock_file`` if the PID in it is gone; return whether it was removed."""
    pid = read_pid(lock_file)
    if pid is None or not pid_is_gone(pid):
        return False
    lock_file.unlink(missing_ok=True)
    return True
