"""`telemetry replay <projection>`: rebuild a read model from its stream.

Resets the tables and checkpoint in one transaction and recreates the durable consumer from
sequence 1; the projection worker then rebuilds the model as it would from scratch. The
projection workers must be stopped first (checked: the consumer must have no waiting pulls).
"""

import asyncio
import os

import psycopg
import structlog
from nats.js.errors import NotFoundError
from psycopg import sql

from projection_worker.main import PROJECTIONS
from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_conn import connect
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology

_RESET_CHECKPOINT = "DELETE FROM telemetry.projection_checkpoints WHERE projection = %s"


async def replay(settings: Settings, name: str) -> str:
    """Reset projection ``name``; return a one-line summary."""
    by_name = {p.NAME: p for p in PROJECTIONS}
    if name not in by_name:
        raise ConfigurationError(f"unknown projection {name!r}; choose from {', '.join(sorted(by_name))}")
    projection = by_name[name]
    nats_url, database_url = settings.require_servers()

    nc = await connect(nats_url, "telemetry-replay", structlog.get_logger(), max_wait_s=5)
    try:
        js = nc.jetstream()
        spec = projection.SPEC
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            info = None
        if info is not None and info.num_waiting:
            raise ConfigurationError(f"consumer {spec.durable} is in use: stop the projection workers, then replay")
        # A projection keeps all its state in its own TABLES (no other read model writes them), so
        # truncating them resets it without touching any other projection's answers.
        async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
            for table in projection.TABLES:
                schema, _, table_name = table.partition(".")
                await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(schema, table_name)))
            await conn.execute(_RESET_CHECKPOINT, (name,))
        if info is not None:
            await js.delete_consumer(spec.stream, spec.durable)
        await ensure_topology(js, settings)
        return f"projection {name} reset; it rebuilds from {spec.stream} sequence 1 when the projection worker starts"
    finally:
        await nc.close()


def main(name: str) -> None:
    """Entry point."""
    print(asyncio.run(replay(Settings.from_env(os.environ), name)))
