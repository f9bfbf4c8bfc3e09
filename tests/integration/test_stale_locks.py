"""Lock files a killed PostgreSQL left behind: removed when their PID is gone, kept when it is alive."""

import os
import subprocess
from pathlib import Path

import psutil
import pytest

from telemetry_core.embedded import start_postgres
from tests.support.eventually import eventually

pytestmark = pytest.mark.slow

# PostgreSQL runs as this user when we are root, and takes a PID of another user for "not a
# postmaster" (kill answers EPERM): a planted PID must be its user's to mean anything to it.
PG_USER = "pgserver" if os.geteuid() == 0 else None


def with_pid(lock_text: str, pid: int) -> str:
    """A copy of a real postmaster.pid / socket lock with another PID on its first line."""
    return "\n".join([str(pid), *lock_text.splitlines()[1:]]) + "\n"


def test_lock_of_a_gone_pid_is_cleared_and_one_of_a_live_pid_is_kept(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "pg", durable=False)
    pgdata, port = server.data_dir / "pgdata", server.port
    postmaster_pid = (pgdata / "postmaster.pid").read_text()
    socket_lock_path = pgdata / f".s.PGSQL.{port}.lock"
    socket_lock = socket_lock_path.read_text()
    server.stop()

    # The PID of an exited child not reaped yet (a zombie) still answers kill(pid, 0): PostgreSQL
    # itself would take it for a running postmaster and refuse to start. It is gone for us.
    zombie = subprocess.Popen(["true"], user=PG_USER)
    try:
        eventually(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, what="a zombie")
        (pgdata / "postmaster.pid").write_text(with_pid(postmaster_pid, zombie.pid))
        socket_lock_path.write_text(with_pid(socket_lock, zombie.pid))
        # A fresh port: no race for the old one; the old port's socket lock must still go.
        server = start_postgres(tmp_path / "pg", durable=False)
        try:
            assert (pgdata / "postmaster.pid").read_text().split()[0] == str(server.proc.pid)
            assert not socket_lock_path.exists()
        finally:
            server.stop()
    finally:
        zombie.wait()

    # A PID that belongs to a live process (whatever it is) is neither signalled nor unlocked.
    sleeper = subprocess.Popen(["sleep", "120"], user=PG_USER)
    try:
        planted = with_pid(postmaster_pid, sleeper.pid)
        (pgdata / "postmaster.pid").write_text(planted)
        with pytest.raises(RuntimeError, match=r'lock file "postmaster\.pid" already exists'):
            start_postgres(tmp_path / "pg", durable=False, deadline_s=20)
        assert (pgdata / "postmaster.pid").read_text() == planted
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
