"""Open NATS, JetStream and the read pool at start-up; stop the worker processes, drain and close at shutdown."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar

from gateway.auth.guard import key_digest
from gateway.commands.wiring import build_commands
from gateway.integration_events import IntegrationEvents
from gateway.off_loop import OffLoop
from gateway.publisher import CommandPublisher
from gateway.state import GatewayState
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.nats_conn import close_nats, connect
from telemetry_core.pg_pool import make_pool
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import ensure_topology


def make_lifespan(settings: Settings) -> "object":
    """Build the lifespan context manager for ``settings``."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        log = structlog.get_logger().bind(process="gateway")
        nats_url, database_url = settings.require_servers()
        signing_key = settings.require_signing_key()
        nc = await connect(nats_url, "telemetry-gateway", log)
        js = nc.jetstream(timeout=settings.publish_timeout_s)
        await ensure_topology(js, settings)
        pool = make_pool(database_url, min_size=2, max_size=settings.db_pool_max, timeout_s=settings.db_timeout_s)
        await pool.open(wait=True, timeout=30.0)
        definitions = DefinitionsCache(js, log)
        await definitions.start()
        publisher = CommandPublisher(nc, js, settings.publish_timeout_s, PointsValidator(signing_key))
        off_loop = OffLoop()  # its processes start with the first backtest
        app.state.gw = GatewayState(
            settings=settings,
            nc=nc,
            js=js,
            pool=pool,
            publisher=publisher,
            key_digests=tuple(key_digest(k) for k in settings.api_keys),
            definitions=definitions,
            commands=build_commands(publisher, pool, definitions, IntegrationEvents(nc, settings.event_prefix)),
            off_loop=off_loop,
        )
        await app.state.gw.reports.start(nc)
        if not settings.api_keys:
            log.warning("no_api_keys", hint="set TELEMETRY_API_KEYS; every request but /health* will get 401")
        log.info("gateway_ready", port=settings.port)
        try:
            yield
        finally:
            await off_loop.shutdown()
            await app.state.gw.reports.stop()
            await definitions.stop()
            await pool.close()
            await close_nats(nc)

    return lifespan
