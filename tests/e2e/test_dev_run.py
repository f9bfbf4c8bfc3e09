"""`telemetry run`: embedded servers, URL and key printed, clean Ctrl-C, data still there next time."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from telemetry_core.embedded import free_port
from tests.e2e.conftest import point
from tests.support.eventually import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def start_run(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(TELEMETRY_DATA_DIR=str(data_dir), TELEMETRY_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetry_core.cli", "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 90
    url = key = ""
    for line in proc.stdout:
        seen.append(line)
        if m := re.match(r"Telemetry service is running at (\S+)", line):
            url = m[1]
        if m := re.match(r"API key: (\S+)", line):
            key = m[1]
            break
        assert time.monotonic() < deadline, "".join(seen)
    assert url, "".join(seen)
    assert key, "".join(seen)
    return proc, url, key


def stop_run(proc: subprocess.Popen[str]) -> list[int]:
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    return children


def test_run_starts_everything_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    proc, url, key = start_run(tmp_path / "data", port)
    try:
        assert url == f"http://127.0.0.1:{port}"
        headers = {"X-Api-Key": key}
        r = httpx.post(f"{url}/api/v1/telemetry/devices/dev_run/telemetry", json=point(value=7), headers=headers)
        assert r.status_code == 200
        latest = f"{url}/api/v1/telemetry/devices/dev_run/metrics/temperature/latest"
        eventually(lambda: httpx.get(latest, headers=headers).status_code == 200, timeout=15, what="stored")
    finally:
        children = stop_run(proc)
    assert len(children) >= 5  # nats-server, postgres, gateway, ingest worker, projection worker
    eventually(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in children),
               timeout=30, what="every child stopped")  # fmt: skip
    assert (tmp_path / "data" / "dev_api_key").read_text().strip() == key

    proc, url, key2 = start_run(tmp_path / "data", port)
    try:
        assert key2 == key
        r = httpx.get(latest, headers={"X-Api-Key": key})
        assert (r.status_code, r.json()["value"]) == (200, 7)
    finally:
        stop_run(proc)
