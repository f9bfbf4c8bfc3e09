"""`telemetry gateway`: serve create_app() on the configured port."""

import os

import uvicorn

from gateway.app import create_app
from telemetry_core.logging import configure_logging
from telemetry_core.settings import Settings


def main() -> None:
    """Parse settings from the environment and serve until SIGINT/SIGTERM."""
    settings = Settings.from_env(os.environ)
    settings.require_servers()
    configure_logging(settings, "gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        # permessage-deflate costs the gateway's CPU per streamed byte (the CPU ingestion shares); off unless
        # the operator wants it for clients on slow links.
        ws_per_message_deflate=settings.ws_compression,
    )
