"""Every process checks the nats-server it connected to in ensure_topology, before it changes anything."""

import dataclasses

import pytest
import structlog
from nats.aio.client import Client

from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology


async def test_the_real_server_passes_and_one_reporting_2_10_is_refused(nc: Client, settings: Settings) -> None:
    js = nc.jetstream(timeout=5.0)
    await ensure_topology(js, settings)  # the embedded nats-server (2.14+): no error

    server = nc._current_server
    assert server is not None
    real = server.server_version
    # The same real connection, as a 2.10 server would introduce itself (its INFO's version field).
    server.server_version = "2.10.4"
    try:
        with pytest.raises(ConfigurationError, match=r"nats-server 2\.10 is older than 2\.14"):
            await ensure_topology(js, settings)
        with structlog.testing.capture_logs() as logs:
            await ensure_topology(js, dataclasses.replace(settings, allow_old_nats=True))
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["nats_server_before_consumer_reset"]
    finally:
        server.server_version = real
