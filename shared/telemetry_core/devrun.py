"""`telemetry run`: embedded servers, migrations, the gateway and workers as supervised children.

Everything is started and restarted from the main thread (the children's parent-death signal is
tied to the thread that forked them), and every child dies with this process, even by SIGKILL.
"""

import fcntl
import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO

from telemetry_core.embedded import EmbeddedServer, start_nats, start_postgres
from telemetry_core.gateway_copies import gateway_children
from telemetry_core.migrate import migrate
from telemetry_core.settings import Settings
from telemetry_core.supervisor import Child, ServerUnit, Supervised, Supervisor

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


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``data_dir/run.lock`` for as long as this process lives: one `telemetry run` per data directory.

    An flock is released by the kernel when its holder dies, however it dies, so a run killed
    hard never blocks the next one.
    """
    lock = (data_dir / "run.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise RuntimeError(f"another `telemetry run` (pid {holder}) is using {data_dir}") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def prepare_run() -> tuple[Settings, Path, IO[str], threading.Event]:
    """Settings, the locked data directory, and an event set by Ctrl-C, SIGTERM or SIGHUP.

    What every `telemetry run` shape (single node or --cluster) starts with; the supervisor stops everything in
    order once the event is set.
    """
    settings = Settings.from_env(os.environ)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        run_lock = lock_data_dir(data_dir)
    except RuntimeError as exc:
        say(f"error: {exc}")
        raise SystemExit(1) from None
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    return settings, data_dir, run_lock, stopping


def main() -> None:
    """Start everything, print the URL and the dev key, supervise until Ctrl-C."""
    settings, data_dir, run_lock, stopping = prepare_run()
    servers: list[EmbeddedServer] = []
    children: list[Child] = []
    try:
        nats_url = settings.nats_url
        if nats_url is None:
            sync = settings.nats_sync_interval
            say(f"starting embedded NATS JetStream (data in {data_dir / 'nats'}, sync_interval {sync})")
            if sync != "always":
                say(f"warning: TELEMETRY_NATS_SYNC_INTERVAL={sync}: acknowledged points can be lost on power loss")
            mqtt = settings.mqtt_port
            credentials = (settings.mqtt_username, settings.mqtt_password) if settings.mqtt_password else None
            nats = start_nats(
                data_dir / "nats", sync_interval=sync, mqtt_port=mqtt, mqtt_host=settings.mqtt_host,
                mqtt_credentials=credentials,
            )  # fmt: skip
            servers.append(nats)
            nats_url = nats.url
            if mqtt:
                say(f"MQTT devices: publish to telemetry/points/<device_id> at {nats.extra['mqtt_url']}")
                say(f"  signing in as {settings.mqtt_username!r} with TELEMETRY_MQTT_PASSWORD" if credentials
                    else "  no MQTT sign-in (loopback only): set TELEMETRY_MQTT_PASSWORD to require one")  # fmt: skip
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
        for i, name in enumerate([CHILD_COMMANDS[0], *workers, CHILD_COMMANDS[3]]):
            label = f"{name}-{i}" if name == "ingest-worker" and settings.ingest_workers > 1 else name
            child = Child(label, [sys.executable, "-m", "telemetry_core.cli", name], env)
            child.start()
            children.append(child)
        for child in gateway_children(settings, env):  # TELEMETRY_GATEWAY_PROCESSES copies on one port
            child.start()
            children.append(child)
        url = f"http://{settings.host}:{settings.port}"
        _wait_healthy(url, children)
        print(f"\nTelemetry service is running at {url}\nAPI key: {key}\n"
              f"More keys: NATS_URL={nats_url} DATABASE_URL={database_url} telemetry apikey create --help\n"
              "Press Ctrl-C to stop.\n", flush=True)  # fmt: skip
        units: list[Supervised] = [*(ServerUnit(server) for server in servers), *children]
        Supervisor(units, say).run(stopping)
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
        run_lock.close()
