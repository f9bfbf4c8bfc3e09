"""The `telemetry` client commands as a person runs them, against the running service.

Each run gets a private HOME / XDG_CONFIG_HOME and none of the caller's TELEMETRY_URL / TELEMETRY_API_KEY,
so flags, environment and config file are exactly what the test gives. Precedence, ``query --csv`` and
``tail`` run as real subprocesses (the entry point, a real exit code); the rest call the same ``main`` in
this process, because each `telemetry` start costs about a second of CPU (imports) and the suite's
time budget is small.
"""

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from telemetry_core.cli import main
from tests.e2e.conftest import wait_rows
from tests.e2e.test_alerts_api import open_alerts, triggered
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.times import iso

pytestmark = pytest.mark.e2e
CLIENT_ENV = ("TELEMETRY_URL", "TELEMETRY_API_KEY", "TELEMETRY_CONFIG")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return {**env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "COLUMNS": "200", **extra}


def telemetry(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "telemetry_core.cli", *args], env=env_for(home, **env),
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Callable[..., Ran]:
    """`telemetry ARGS` in this process (same parser, same exit codes), with env as telemetry() gives it."""

    def run(*args: str, **env: str) -> Ran:
        for key in CLIENT_ENV:
            monkeypatch.delenv(key, raising=False)
        for key, value in {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config"), **env}.items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def write_config(home: Path, **values: str) -> None:
    path = home / ".config" / "telemetry" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in values.items()))


def test_config_file_then_environment_then_flag(
    stack: Stack, servers: Servers, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    device = unique("cli_prec")
    write_config(tmp_path, url=stack.url, api_key="wrong-key-from-the-file")
    # The file alone: its url is used, its key is refused (401, with the API's detail, exit 4).
    refused = telemetry(tmp_path, "send", device, "temperature", "20.5")
    assert refused.returncode == 4, refused
    assert refused.stderr.strip() == "telemetry send: 401 invalid API key"
    # The environment beats the file.
    ok = telemetry(
        tmp_path, "send", device, "temperature", "21.5", "--unit", "celsius", TELEMETRY_API_KEY=stack.api_key
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"stored temperature=21.5 for {device}")
    # A flag beats the environment.
    flagged = telemetry(tmp_path, "send", device, "temperature", "22.5", "--key", "wrong-flag-key",
                        TELEMETRY_API_KEY=stack.api_key)  # fmt: skip
    assert flagged.returncode == 4, flagged
    shown = cli("config", "--url", stack.url, TELEMETRY_API_KEY=stack.api_key)
    assert f"url: {stack.url} (from --url)" in shown.stdout and "(from TELEMETRY_API_KEY)" in shown.stdout
    assert [(r[0], r[3]) for r in wait_rows(servers, device, 1)] == [("temperature", 21.5)]


def test_refused_request_prints_the_detail_and_exits_1(stack: Stack, cli: Callable[..., Ran], tmp_path: Path) -> None:
    bad = cli("send", "dev_1", "bad.name", "1", "--url", stack.url, "--key", stack.api_key)
    assert bad.returncode == 1, bad
    assert "422" in bad.stderr and "metric_name" in bad.stderr
    usage = cli("query", "dev_1", "temperature", "--since", "soon", "--url", stack.url)
    assert usage.returncode == 2 and "--since" in usage.stderr
    nothing = tmp_path / "nothing.csv"
    empty = cli("export", "--device", unique("cli_none"), "--metric", "m", "-o", str(nothing), "--url", stack.url,
                "--key", stack.api_key)  # fmt: skip
    assert empty.returncode == 1 and "404" in empty.stderr and not nothing.exists(), empty


def test_send_then_query_as_csv_and_table_then_export(
    stack: Stack, servers: Servers, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    device = unique("cli_query")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    env = {"TELEMETRY_URL": stack.url, "TELEMETRY_API_KEY": stack.api_key}
    for i, value in enumerate(("21.5", "true", '{"mode": "eco"}')):
        sent = cli("send", device, f"m{i}", value, "--time", iso(t0 + timedelta(seconds=i)),
                         "--tag", "site=north", **env)  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    wait_rows(servers, device, 3)
    window = ("--start", iso(t0 - timedelta(minutes=1)), "--end", iso(t0 + timedelta(minutes=1)))
    as_csv = telemetry(tmp_path, "query", device, "m0", "m1", "m2", *window, "--csv", **env)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["metric_name"], r["value"]) for r in rows] == [("m0", "21.5"), ("m1", "True"), ("m2", '{"mode":"eco"}')]
    assert rows[0]["timestamp"] == t0.isoformat()
    table = cli("query", device, "m0", *window, **env)
    assert table.returncode == 0 and "1 point" in table.stdout and "21.5" in table.stdout
    out = tmp_path / "export.csv"
    exported = cli("export", "--device", device, "--metric", "m0", "--metric", "m1", *window,
                         "-o", str(out), **env)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 rows" in exported.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("timestamp,device_id,metric_name,value") and len(lines) == 3


def test_tail_prints_a_point_sent_while_it_follows(stack: Stack, tmp_path: Path) -> None:
    device = unique("cli_tail")
    proc = subprocess.Popen([sys.executable, "-m", "telemetry_core.cli", "tail", device, "temperature", "--count",
                             "1", "--json", "--url", stack.url, "--key", stack.api_key], env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    sent: list[float] = []
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=10) as client:
            # Points are followed from when the socket opens: send until tail has printed one and exited.
            while proc.poll() is None and time.monotonic() < deadline:
                value = 30.0 + len(sent)
                r = client.post(f"/api/v1/telemetry/devices/{device}/telemetry",
                                json={"timestamp": iso(datetime.now(UTC)), "metric_name": "temperature", "value": value})  # fmt: skip
                assert r.status_code == 200, r.text
                sent.append(value)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.3)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    printed = json.loads(out.strip().splitlines()[0])
    assert printed["device_id"] == device and printed["metric_name"] == "temperature" and printed["value"] in sent
    assert f"following {device} temperature" in err


def test_alerts_list_ack_resolve(client: httpx.Client, stack: Stack, cli: Callable[..., Ran]) -> None:
    device = unique("cli_alert")
    event = triggered(device, level="critical")
    open_alerts(client, stack, event)
    env = {"TELEMETRY_URL": stack.url, "TELEMETRY_API_KEY": stack.api_key}
    listed = cli("alerts", "list", "--device", device, "--json", **env)
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert [(a["alert_id"], a["status"], a["level"]) for a in page["alerts"]] == [
        (event.alert_id, "active", "critical")
    ]
    acked = cli("alerts", "ack", event.alert_id, "--note", "on it", **env)
    assert acked.returncode == 0 and acked.stdout.strip() == f"{event.alert_id} is now acknowledged", acked
    resolved = cli("alerts", "resolve", event.alert_id, **env)
    assert resolved.returncode == 0 and resolved.stdout.strip() == f"{event.alert_id} is now resolved", resolved
    again = cli("alerts", "resolve", event.alert_id, **env)
    assert again.returncode == 1 and "409" in again.stderr, again
    final = client.get(f"/api/v1/telemetry/alerts/{event.alert_id}").json()
    assert final["status"] == "resolved" and final["acknowledgement_note"] == "on it"
