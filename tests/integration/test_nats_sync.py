"""The embedded nats-server fsyncs before it acknowledges (sync_interval: always) unless told otherwise.

Checked on the running server's own view of its configuration (/varz), not on the file we wrote: a key
nats-server ignored or parsed differently (an unquoted ``2m`` is the number 2,000,000) would show there.
"""

import json
import urllib.request
from pathlib import Path

import pytest

from telemetry_core.embedded import free_port, start_nats
from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings


def jetstream_config(tmp_path: Path, **kwargs: str) -> dict[str, object]:
    monitor = free_port()
    server = start_nats(tmp_path / "nats", monitor_port=monitor, **kwargs)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as resp:
            return dict(json.load(resp)["jetstream"]["config"])
    finally:
        server.stop()


def test_embedded_nats_syncs_before_every_acknowledgement_by_default(tmp_path: Path) -> None:
    config = jetstream_config(tmp_path)
    assert config.get("sync_always") is True


def test_the_opt_out_is_a_real_interval(tmp_path: Path) -> None:
    config = jetstream_config(tmp_path, sync_interval="1s")
    assert not config.get("sync_always")
    assert config["sync_interval"] == 1_000_000_000  # nanoseconds


def test_restart_keeps_the_sync_setting(tmp_path: Path) -> None:
    monitor = free_port()
    server = start_nats(tmp_path / "nats", monitor_port=monitor, sync_interval="3s")
    server.kill()
    server.restart()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=5) as resp:
            assert json.load(resp)["jetstream"]["config"]["sync_interval"] == 3_000_000_000
    finally:
        server.stop()


@pytest.mark.parametrize(("raw", "parsed"), [(None, "always"), ("", "always"), ("ALWAYS", "always"), ("2m", "2m"),
                                             ("250ms", "250ms")])  # fmt: skip
def test_sync_interval_setting(raw: str | None, parsed: str) -> None:
    env = {} if raw is None else {"TELEMETRY_NATS_SYNC_INTERVAL": raw}
    assert Settings.from_env(env).nats_sync_interval == parsed


@pytest.mark.parametrize("raw", ["never", "2", "1 m", "-1s"])
def test_sync_interval_setting_rejects_what_nats_would_misread(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="TELEMETRY_NATS_SYNC_INTERVAL"):
        Settings.from_env({"TELEMETRY_NATS_SYNC_INTERVAL": raw})
