"""A nats-server without consumer resets (before 2.14) is refused at start-up unless TELEMETRY_ALLOW_OLD_NATS is set."""

import pytest
import structlog
from structlog.testing import capture_logs

from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_version import require_consumer_reset
from telemetry_core.settings import Settings

LOG = structlog.get_logger()


@pytest.mark.parametrize("server", [(2, 10), (2, 13), (1, 99)])
def test_an_older_server_stops_the_process_with_what_to_do(server: tuple[int, int]) -> None:
    with pytest.raises(ConfigurationError) as raised:
        require_consumer_reset(server, Settings.from_env({}).allow_old_nats, LOG)
    message = str(raised.value)
    assert f"nats-server {server[0]}.{server[1]} is older than 2.14" in message
    assert "TELEMETRY_ALLOW_OLD_NATS=1" in message and "read models missing updates" in message


@pytest.mark.parametrize("server", [(2, 14), (2, 15), (3, 0)])
def test_a_server_with_consumer_resets_passes_silently(server: tuple[int, int]) -> None:
    with capture_logs() as logs:
        require_consumer_reset(server, False, LOG)
    assert logs == []


def test_allowing_an_older_server_runs_it_and_says_what_it_costs() -> None:
    allowed = Settings.from_env({"TELEMETRY_ALLOW_OLD_NATS": "1"}).allow_old_nats
    with capture_logs() as logs:
        require_consumer_reset((2, 10), allowed, LOG)
    assert [(e["event"], e["log_level"], e["server"]) for e in logs] == [
        ("nats_server_before_consumer_reset", "warning", "2.10")
    ]
