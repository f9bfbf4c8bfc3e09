"""`telemetry run`: embedded servers, URL and key printed, clean Ctrl-C, data still there next time;
killed servers come back by themselves; a killed run takes all its children with it."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from telemetry_core.embedded import free_port
from tests.e2e.conftest import point
from tests.support.eventually import eventually
from tests.support.mqtt import mqtt_device
from tests.support.ws_client import collect, open_socket, subscribe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class Run:
    """A `telemetry run` process; its output keeps being read (into ``lines``) so it never blocks on a full pipe."""

    proc: subprocess.Popen[str]
    url: str
    key: str
    lines: list[str] = field(default_factory=list)

    def drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def run_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    # A free MQTT port too: the default 1883 would collide between runs (and suites) on one machine.
    env.update(TELEMETRY_DATA_DIR=str(data_dir), TELEMETRY_PORT=str(port), TELEMETRY_MQTT_PORT=str(free_port()))
    # One gateway unless a test asks for copies (the default, one per core, would vary with the machine).
    env.setdefault("TELEMETRY_GATEWAY_PROCESSES", "1")
    env.update(extra)
    return env


def start_run(data_dir: Path, port: int, **extra_env: str) -> Run:
    """Start `telemetry run`; return once it printed its URL and key. If it does not, stop it before failing.

    Its output is read by a thread from the start (``Run.drain``), so a run that hangs silently fails at the
    deadline instead of blocking the test, and a failed start never leaves servers behind for later tests.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry_core.cli", "run"],
        env=run_env(data_dir, port, **extra_env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    run = Run(proc, "", "")
    reader = threading.Thread(target=run.drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not (run.url and run.key):
            for line in list(run.lines):
                if m := re.match(r"Telemetry service is running at (\S+)", line):
                    run.url = m[1]
                if m := re.match(r"API key: (\S+)", line):
                    run.key = m[1]
            if run.url and run.key:
                break
            if proc.poll() is not None:
                reader.join(10)  # the rest of its output, up to the end of the pipe
                raise AssertionError(f"`telemetry run` exited with {proc.returncode}:\n{''.join(run.lines)}")
            assert time.monotonic() < deadline, f"no URL and key within 90 s:\n{''.join(run.lines)}"
            time.sleep(0.05)
    except BaseException:
        _stop_quietly(proc)
        raise
    return run


def _stop_quietly(proc: subprocess.Popen[str]) -> None:
    """SIGINT (the run stops its children), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def stop_run(run: Run) -> list[int]:
    children = [c.pid for c in psutil.Process(run.proc.pid).children(recursive=True)]
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(60) == 0
    return children


def running(processes: list[psutil.Process]) -> list[str]:
    """Those still running (a zombie has exited; ``is_running`` also guards against PID reuse)."""
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            pass
    return alive


async def _stream_through_copies(run: Run, device: str, count: int) -> list[float]:
    """Subscribe, open the socket on one copy, post ``count`` points on fresh connections (spread over the copies)."""
    headers = {"X-Api-Key": run.key}
    with httpx.Client(base_url=run.url, headers=headers, timeout=15) as client:
        answer = subscribe(client, device_ids=[device], max_frequency=100)
    async with open_socket(run.url, answer) as ws:
        for n in range(count):
            # A client per point: a new connection each, so the posts land on either copy.
            async with httpx.AsyncClient(base_url=run.url, headers=headers, timeout=15) as fresh:
                r = await fresh.post(f"/api/v1/telemetry/devices/{device}/telemetry", json=point(value=n))
            assert r.status_code == 200
        got = await collect(ws, lambda rec: len(rec.points) >= count)
    return sorted(p["value"] for p in got.points)


def check_gateway_copies(run: Run, copies: int) -> None:
    """`copies` gateway processes serve the one port (each answers /health/detailed with its pid) and stream."""
    gateways = [c for c in psutil.Process(run.proc.pid).children(recursive=True) if "gateway" in c.cmdline()]
    assert len(gateways) == copies, [c.cmdline() for c in gateways]
    seen: set[int] = set()

    def every_copy_answered() -> bool:
        # A fresh connection each time: the kernel spreads connections over the SO_REUSEPORT sockets.
        r = httpx.get(f"{run.url}/health/detailed", headers={"X-Api-Key": run.key}, timeout=10)
        assert r.status_code == 200, r.text
        seen.add(r.json()["performance"]["gateway_pid"])
        return len(seen) == copies

    eventually(every_copy_answered, timeout=30, interval=0.01, what=f"{copies} gateway copies answering")
    assert seen == {c.pid for c in gateways}
    assert asyncio.run(_stream_through_copies(run, "dev_run_stream", 8)) == list(range(8))


def test_run_starts_everything_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    run = start_run(tmp_path / "data", port, TELEMETRY_GATEWAY_PROCESSES="2")
    try:
        check_gateway_copies(run, 2)
        assert run.url == f"http://127.0.0.1:{port}"
        headers = {"X-Api-Key": run.key}
        r = httpx.post(f"{run.url}/api/v1/telemetry/devices/dev_run/telemetry", json=point(value=7), headers=headers)
        assert r.status_code == 200
        latest = f"{run.url}/api/v1/telemetry/devices/dev_run/metrics/temperature/latest"
        eventually(lambda: httpx.get(latest, headers=headers).status_code == 200, timeout=15, what="stored")
        # The embedded nats-server's MQTT listener is on, where the run says (README, "MQTT devices").
        said = next(line for line in run.lines if "MQTT devices: publish to telemetry/points/<device_id> at" in line)
        mqtt_port = int(said.strip().rsplit(":", 1)[1])
        with mqtt_device(mqtt_port) as device:
            device.publish_points("dev_run_mqtt", [point(value=8)])
        by_mqtt = f"{run.url}/api/v1/telemetry/devices/dev_run_mqtt/metrics/temperature/latest"
        got = eventually(lambda: (r := httpx.get(by_mqtt, headers=headers)).status_code == 200 and r.json(),
                         timeout=15, what="MQTT point stored")  # fmt: skip
        assert got["value"] == 8
    finally:
        children = stop_run(run)
    assert len(children) >= 6  # nats-server, postgres, two gateways, ingest worker, projection worker
    eventually(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in children),
               timeout=30, what="every child stopped")  # fmt: skip
    assert (tmp_path / "data" / "dev_api_key").read_text().strip() == run.key

    run = start_run(tmp_path / "data", port)
    try:
        assert run.key == headers["X-Api-Key"]
        r = httpx.get(latest, headers=headers)
        assert (r.status_code, r.json()["value"]) == (200, 7)
    finally:
        stop_run(run)


@dataclass
class Sender:
    """Posts numbered points of one device; remembers which were acknowledged (HTTP 200)."""

    client: httpx.Client
    device: str = "dev_run_kill"
    start: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    sent: int = 0
    acked: list[int] = field(default_factory=list)

    def post(self) -> int:
        n = self.sent
        self.sent += 1
        ts = (self.start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
        try:
            r = self.client.post(f"/api/v1/telemetry/devices/{self.device}/telemetry", json=point(value=n, ts=ts))
        except httpx.HTTPError:
            return 0
        if r.status_code == 200:
            self.acked.append(n)
        return r.status_code

    def post_acked(self, count: int) -> None:
        for _ in range(count):
            assert self.post() == 200


def server_pid(pid_file: Path) -> int:
    return int(pid_file.read_text().split()[0])


def kill_and_recover(run: Run, sender: Sender, pid_file: Path, name: str) -> None:
    """SIGKILL the server whose PID is in ``pid_file``; keep posting until it is back under a new PID and healthy."""
    old = server_pid(pid_file)
    assert old in [c.pid for c in psutil.Process(run.proc.pid).children()], f"{name} is not a child of the run"
    os.kill(old, signal.SIGKILL)

    def recovered() -> bool:
        sender.post()  # acknowledged or not, while it is down: the acknowledged ones must be kept
        try:
            new = server_pid(pid_file)
        except (OSError, ValueError, IndexError):
            return False
        healthy = httpx.get(f"{run.url}/health", timeout=5).status_code == 200
        return new != old and psutil.pid_exists(new) and healthy

    eventually(recovered, timeout=60, interval=0.2, what=f"{name} restarted and /health 200")
    assert run.said(f"{name} exited with -9; restarting"), "".join(run.lines[-30:])
    sender.post_acked(5)


def stored_values(data_dir: Path, device: str) -> list[int]:
    port = (data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().splitlines()[3]
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/telemetry") as conn:
        rows = conn.execute(
            "SELECT value_num FROM telemetry.points WHERE device_id = %s ORDER BY time", (device,)
        ).fetchall()
    return [int(v) for (v,) in rows]


def test_killed_servers_come_back_and_a_killed_run_leaves_no_child(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    run = start_run(data_dir, port)
    try:
        with httpx.Client(base_url=run.url, headers={"X-Api-Key": run.key}, timeout=10) as client:
            sender = Sender(client)
            sender.post_acked(5)
            kill_and_recover(run, sender, data_dir / "nats" / "nats-server.pid", "nats-server")
            kill_and_recover(run, sender, data_dir / "postgres" / "pgdata" / "postmaster.pid", "postgres")
            acked = set(sender.acked)
            # A point not acknowledged (503 or timeout while a server was down) may be stored or not.
            eventually(lambda: acked <= set(stored_values(data_dir, sender.device)), timeout=15,
                       what=f"all {len(acked)} acknowledged points stored")  # fmt: skip
            assert len(acked) >= 15
            assert set(stored_values(data_dir, sender.device)) <= set(range(sender.sent))

        children = psutil.Process(run.proc.pid).children(recursive=True)
        assert len(children) >= 6  # nats-server, postgres (and its own), gateway, three workers
        run.proc.kill()
        run.proc.wait(10)
        eventually(lambda: not running(children), timeout=20, what="no child of the killed run left")
    finally:
        if run.proc.poll() is None:
            stop_run(run)

    run = start_run(data_dir, port)  # the next run on the same data starts, its data intact
    try:
        assert acked <= set(stored_values(data_dir, sender.device))
        # ... and while it runs, another one on the same data directory refuses to start beside it.
        second = subprocess.run(
            [sys.executable, "-m", "telemetry_core.cli", "run"], env=run_env(data_dir, free_port()),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"another `telemetry run` (pid {run.proc.pid}) is using {data_dir}" in second.stdout
    finally:
        stop_run(run)


def test_a_run_that_cannot_start_fails_the_test_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    # The port is taken by a plain listener: the gateway cannot bind it, so the run never prints its URL.
    data_dir = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(AssertionError) as failed:
            start_run(data_dir, taken.getsockname()[1])
    assert "address already in use" in str(failed.value).lower()  # the run's own output, in the failure
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(data_dir) in " ".join(p.info["cmdline"] or [])]
    eventually(lambda: not running(leftovers), timeout=30, what="no server of the failed run left")
