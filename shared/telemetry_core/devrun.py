"""`telemetry run`: embedded servers, migrations, the gateway and workers as supervised children."""

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from telemetry_core.embedded import EmbeddedServer, start_nats, start_postgres
from telemetry_core.migrate import migrate
from telemetry_core.settings import Settings

CHILD_COMMANDS = ("projection-worker", "ingest-worker", "gateway", "alert-worker")


def say(message: str) -> None:
    """Print a line from the runner itself."""
    print(f"{'run':>18} | {message}", flush=True)


def dev_api_key(data_dir: Path) -> str:
    """The dev admin key, made once and kept in the data directory (never in the repo)."""
    path = data_dir / "dev_api_key"
    if path.exists():
        return path.read_text().strip()
    key = "tsk_dev_" + secrets.token_urlsafe(18)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def dev_signing_key(data_dir: Path) -> str:
    """The POINTS signing key shared by this data directory's gateway and workers, made once."""
    path = data_dir / "signing_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Child:
    """A supervised child process whose output is prefixed with its name."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start (or restart) the process and a thread that relays its output."""
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pump = threading.Thread(target=self._relay, args=(self.proc,), daemon=True)
        self.pump.start()

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"{self.name:>18} | {line.decode(errors='replace')}")
            sys.stdout.flush()

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


def _wait_healthy(url: str, children: list[Child], deadline_s: float = 90.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for child in children:
            if child.proc is not None and child.proc.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.proc.returncode} during start-up (see its log above)"
                )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:  # noqa: S310 - our own localhost URL
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the gateway did not become healthy at {url}/health within {deadline_s}s")


def main() -> None:
    """Start everything, print the URL and the dev key, supervise until Ctrl-C."""
    settings = Settings.from_env(os.environ)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    servers: list[EmbeddedServer] = []
    children: list[Child] = []
    try:
        nats_url = settings.nats_url
        if nats_url is None:
            say(f"starting embedded NATS JetStream (data in {data_dir / 'nats'})")
            servers.append(start_nats(data_dir / "nats"))
            nats_url = servers[-1].url
        database_url = settings.database_url
        if database_url is None:
            say(f"starting embedded PostgreSQL (data in {data_dir / 'postgres'})")
            servers.append(start_postgres(data_dir / "postgres"))
            database_url = servers[-1].url
        applied = migrate(database_url)
        say(f"database migrated ({len(applied)} new migration(s))")
        key = dev_api_key(data_dir)
        env = dict(os.environ)
        env.update(
            NATS_URL=nats_url,
            DATABASE_URL=database_url,
            TELEMETRY_API_KEYS=",".join([*settings.api_keys, key]),
            TELEMETRY_SIGNING_KEY=settings.signing_key or dev_signing_key(data_dir),
            TELEMETRY_LOG_FORMAT=settings.log_format if settings.log_format != "auto" else "console",
        )
        workers = ["ingest-worker"] * settings.ingest_workers
        for i, name in enumerate([CHILD_COMMANDS[0], *workers, CHILD_COMMANDS[3], CHILD_COMMANDS[2]]):
            label = f"{name}-{i}" if name == "ingest-worker" and settings.ingest_workers > 1 else name
            child = Child(label, [sys.executable, "-m", "telemetry_core.cli", name], env)
            child.start()
            children.append(child)
        url = f"http://{settings.host}:{settings.port}"
        _wait_healthy(url, children)
        print(f"\nTelemetry service is running at {url}\nAPI key: {key}\nPress Ctrl-C to stop.\n", flush=True)
        _supervise(children, stopping)
    except RuntimeError as exc:
        say(f"error: {exc}")
        raise SystemExit(1) from None
    finally:
        say("stopping")
        for child in reversed(children):
            child.stop()
        for server in reversed(servers):
            server.stop()
        say("stopped; data kept in " + str(data_dir))


def _supervise(children: list[Child], stopping: threading.Event) -> None:
    """Restart a child that died, with exponential backoff (1 s … 30 s), until asked to stop."""
    while not stopping.wait(0.5):
        now = time.monotonic()
        for child in children:
            assert child.proc is not None
            if child.proc.poll() is None:
                continue
            if child.restart_at is None:
                delay = min(30.0, 2.0**child.restarts)
                say(f"{child.name} exited with {child.proc.returncode}; restarting in {delay:.0f}s")
                child.restart_at = now + delay
            elif now >= child.restart_at:
                child.restarts += 1
                child.restart_at = None
                child.start()
