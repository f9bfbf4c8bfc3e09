"""NATS connection with reconnect and logged callbacks."""

import asyncio
import contextlib

import nats
import structlog
from nats.aio.client import Client

from telemetry_core.retry import connect_retrying


def server_urls(url: str) -> list[str]:
    """The servers of a NATS_URL: one URL, or a cluster's URLs comma-separated (the client fails over among them)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def connect(url: str, name: str, log: structlog.stdlib.BoundLogger, max_wait_s: float = 30.0) -> Client:
    """Connect to NATS, retrying at start-up, then reconnecting forever once connected."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def on_disconnected() -> None:
        log.warning("nats_disconnected")

    async def on_reconnected() -> None:
        log.info("nats_reconnected")

    async for attempt in connect_retrying(max_wait_s):
        with attempt:
            return await nats.connect(
                server_urls(url),
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            )
    raise AssertionError("unreachable: connect_retrying reraises")


async def close_nats(nc: Client, timeout_s: float = 5.0) -> None:
    """Drain (finish in-flight work, flush) within ``timeout_s``, else close: shutdown never hangs.

    Closing is bounded too: with the server gone, the client may be in the middle of a reconnect.
    """
    try:
        await asyncio.wait_for(nc.drain(), timeout_s)
    except Exception:  # timeout, or already closed
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 1.0)
