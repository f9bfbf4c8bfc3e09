"""`telemetry gateway`: serve create_app() on the configured port."""

import os
import socket

import uvicorn

from gateway.app import create_app
from gateway.fast_app import fast_paths
from telemetry_core.gc_tuning import tune_gc
from telemetry_core.logging import configure_logging
from telemetry_core.settings import Settings


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT: several gateway processes on one port.

    The kernel spreads connections between them (`telemetry run` starts TELEMETRY_GATEWAY_PROCESSES of them).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def main() -> None:
    """Parse settings from the environment and serve until SIGINT/SIGTERM."""
    settings = Settings.from_env(os.environ)
    settings.require_servers()
    configure_logging(settings, "gateway")
    app = create_app(settings)
    config = uvicorn.Config(
        fast_paths(app, reads=settings.fast_reads, ingest=settings.fast_ingest)
        if settings.fast_reads or settings.fast_ingest
        else app,
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
    server = uvicorn.Server(config)
    tune_gc(settings.gc_threshold, "gateway")  # after the app is built: its objects are frozen with the rest
    if settings.gateway_reuse_port:
        server.run(sockets=[reuse_port_socket(settings.host, settings.port)])
    else:
        server.run()
