"""The nats-server release every process needs: 2.14, the first that can reset a consumer to its ack floor.

consumer_reset.py needs that reset for the projections and the alert engines to survive a crash without skipping
what the dead process held. Without it the service would run and lose read-model updates after the first crash,
so every process checks the server at start-up (topology.ensure_topology) and refuses an older one by default.
"""

import structlog

from telemetry_core.errors import ConfigurationError

# The server release that added $JS.API.CONSUMER.RESET.
RESET_SINCE = (2, 14)
CONSEQUENCE = (
    "messages a dead predecessor held may be applied after newer ones, or skipped by a checkpoint (read models "
    "missing updates, points never evaluated for alerts)"
)


def require_consumer_reset(server: tuple[int, int], allow_old: bool, log: structlog.stdlib.BoundLogger) -> None:
    """Refuse a nats-server older than 2.14 at start-up (ConfigurationError), unless ``allow_old`` says run anyway.

    Checked by every process (topology.ensure_topology) so that an old server is a clear start-up error, not a
    log line after the first crash. ``allow_old`` (TELEMETRY_ALLOW_OLD_NATS) keeps the old behaviour, logged.
    """
    if server >= RESET_SINCE:
        return
    found, needed = f"{server[0]}.{server[1]}", f"{RESET_SINCE[0]}.{RESET_SINCE[1]}"
    if not allow_old:
        raise ConfigurationError(
            f"nats-server {found} is older than {needed}: it cannot reset a consumer to its ack floor, so after a "
            f"crash {CONSEQUENCE}. Upgrade nats-server to {needed} or later, or set TELEMETRY_ALLOW_OLD_NATS=1 "
            "to run anyway"
        )
    log.warning("nats_server_before_consumer_reset", server=found, needed=needed, consequence=CONSEQUENCE)
