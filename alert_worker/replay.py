"""`telemetry replay alerts_<i>_of_<n>`: start one alert engine over on POINTS as the stream is now.

For an engine stopped because POINTS changed under its checkpoint (telemetry_core/stream_guard.py): its
machines and checkpoint describe a stream that is gone. This deletes both in one transaction and the
durable consumer; the engine recreates the consumer when it starts and evaluates POINTS from its first
message, as a new installation does. The partition's alert workers must be stopped first (checked: the
consumer must have no waiting pulls). Alerts already raised stay as they are.
"""

import asyncio
import os
import re

import psycopg
import structlog
from nats.js.errors import NotFoundError

from alert_worker import state_store
from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_conn import connect
from telemetry_core.settings import Settings
from telemetry_core.topology import POINTS_STREAM

ENGINE_NAME = re.compile(r"alerts_[0-9]+_of_[0-9]+")


async def replay(settings: Settings, name: str) -> str:
    """Reset alert engine ``name`` (its consumer's name); return a one-line summary."""
    if not ENGINE_NAME.fullmatch(name):
        raise ConfigurationError(f"{name!r} is not an alert engine (alerts_<partition>_of_<partitions>)")
    nats_url, database_url = settings.require_servers()
    nc = await connect(nats_url, "telemetry-replay", structlog.get_logger(), max_wait_s=5)
    try:
        js = nc.jetstream()
        try:
            info = await js.consumer_info(POINTS_STREAM, name)
        except NotFoundError:
            info = None
        if info is not None and info.num_waiting:
            raise ConfigurationError(f"consumer {name} is in use: stop the partition's alert workers, then replay")
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await state_store.reset(conn, name, POINTS_STREAM)
        if info is not None:
            await js.delete_consumer(POINTS_STREAM, name)
        return f"alert engine {name} reset; it evaluates {POINTS_STREAM} from its first message when it starts"
    finally:
        await nc.close()


def main(name: str) -> None:
    """Entry point."""
    print(asyncio.run(replay(Settings.from_env(os.environ), name)))
