"""Open NATS, JetStream and the pools (a replica's too, if set) at start-up; stop workers, drain, close at exit."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar

from gateway.auth.authenticator import Authenticator
from gateway.auth.deleted_users import DeletedUsers
from gateway.auth.key_cache import ApiKeyCache
from gateway.auth.rate_share import RateShare
from gateway.auth.remote_verifier import RemoteVerifier
from gateway.backlog import BacklogMonitor
from gateway.bounded_shutdown import Step, run_steps
from gateway.commands.wiring import build_commands
from gateway.heavy_queries import HeavyQueries, heavy_concurrency
from gateway.integration_events import IntegrationEvents
from gateway.latest_prefill import YIELDS_AT_BACKLOG_S as PREFILL_YIELDS_AT_S
from gateway.latest_wiring import start_cached_reads, stop_cached_reads
from gateway.live.connect_token import ConnectTokens
from gateway.live.hub import LiveHub
from gateway.live.subscriptions_kv import SubscriptionStore
from gateway.off_loop import OffLoop
from gateway.publisher import CommandPublisher
from gateway.read_pool import close_read_pool, open_read_pool
from gateway.state import GatewayState
from gateway.views.series_batches import batch_series_reads
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
        pool = make_pool(database_url, min_size=2, max_size=settings.db_pool_max, timeout_s=settings.db_timeout_s,
                         statement_timeout_s=settings.statement_timeout_s, autocommit=True)  # fmt: skip
        await pool.open(wait=True, timeout=30.0)
        read_pool = await open_read_pool(settings, pool)  # ``pool`` itself unless DATABASE_READ_URL is set
        batch_series_reads(read_pool, settings.query_batch_max)
        definitions = DefinitionsCache(js, log)
        await definitions.start()
        api_keys = ApiKeyCache(js, log)
        await api_keys.start()
        deleted_users = DeletedUsers(js, settings.user_deleted_subject, pool, log)
        await deleted_users.start()
        remote = RemoteVerifier(settings, log) if settings.auth_service_url else None
        validator = PointsValidator(signing_key)
        publisher = CommandPublisher(nc, js, settings.publish_timeout_s, validator)
        live = LiveHub(js, await SubscriptionStore.open(js), ConnectTokens(signing_key, settings.connect_token_ttl_s),
                       validator, settings)  # fmt: skip
        await live.start()
        off_loop = OffLoop()  # its processes start with the first backtest
        backlog = BacklogMonitor(js, settings.max_ingest_backlog_s, settings.backlog_check_s)
        await backlog.start()
        heavy = HeavyQueries(heavy_concurrency(settings.heavy_query_concurrency, settings.db_pool_max),
                             settings.heavy_query_wait_s)  # fmt: skip
        announce = IntegrationEvents(nc, settings.event_prefix)
        app.state.gw = GatewayState(
            settings=settings,
            nc=nc,
            js=js,
            pool=pool,
            read_pool=read_pool,
            publisher=publisher,
            auth=Authenticator(settings, api_keys, remote, deleted_users),
            definitions=definitions,
            commands=build_commands(publisher, pool, read_pool, definitions, announce, nc),
            off_loop=off_loop,
            live=live,
            backlog=backlog,
            heavy=heavy,
            # The latest-value prefill waits while storage is behind: reads must not slow a saturated ingest.
            reads=await start_cached_reads(
                settings, nats_url, read_pool, log, busy=lambda: backlog.behind(PREFILL_YIELDS_AT_S)
            ),
        )
        await app.state.gw.reports.start(nc)
        rate_share = RateShare(nc, app.state.gw.auth.requests, app.state.gw.auth.points, log)
        await rate_share.start()
        if not settings.api_keys:
            log.warning("no_bootstrap_api_keys", hint="set TELEMETRY_API_KEYS to administer the service")
        log.info("gateway_ready", port=settings.port)
        try:
            yield
        finally:
            gw = app.state.gw
            steps: list[Step] = [] if remote is None else [("remote_verifier", remote.aclose)]
            await run_steps([
                ("backlog", backlog.stop),
                ("rate_share", rate_share.stop),
                ("cached_reads", lambda: stop_cached_reads(gw.reads)),
                ("live", live.stop),
                ("off_loop", off_loop.shutdown),
                ("reports", gw.reports.stop),
                ("definitions", definitions.stop),
                ("api_keys", api_keys.stop),
                ("deleted_users", deleted_users.stop),
                *steps,
                ("read_pool", lambda: close_read_pool(read_pool, pool)),
                ("pool", pool.close),
                ("nats", lambda: close_nats(nc)),
            ])  # fmt: skip

    return lifespan
