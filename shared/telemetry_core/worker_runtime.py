"""The start-up every worker process shares: a stop event wired to SIGTERM/SIGINT, NATS and the topology."""

import asyncio
import signal
from dataclasses import dataclass

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from telemetry_core.nats_conn import connect
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology


@dataclass(frozen=True)
class WorkerRuntime:
    """What a worker's composition root starts from."""

    stop: asyncio.Event
    nc: Client
    js: JetStreamContext
    database_url: str


async def start_worker(settings: Settings, name: str, log: structlog.stdlib.BoundLogger) -> WorkerRuntime:
    """Install the stop signals, connect to NATS (retrying at start-up) and ensure streams and consumers."""
    nats_url, database_url = settings.require_servers()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await connect(nats_url, f"telemetry-{name}", log)
    js = nc.jetstream(timeout=5.0)
    await ensure_topology(js, settings)
    return WorkerRuntime(stop, nc, js, database_url)
