"""What the gateway holds for its lifetime: connections, the publisher, the command handlers (on app.state.gw)."""

import time
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from gateway.auth.authenticator import Authenticator
from gateway.backlog import BacklogMonitor
from gateway.commands.wiring import Commands
from gateway.heavy_queries import HeavyQueries
from gateway.latest_wiring import CachedReads
from gateway.live.hub import LiveHub
from gateway.metrics import WorkerReports
from gateway.off_loop import OffLoop
from gateway.publisher import CommandPublisher
from gateway.views.cached_queries import QueryReads
from gateway.views.latest import LatestReads
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.settings import Settings


@dataclass
class GatewayState:
    """Resources opened by the lifespan; handlers receive them through the dependencies in gateway/deps.py."""

    settings: Settings
    nc: Client
    js: JetStreamContext
    pool: AsyncConnectionPool
    # What the views read and read-your-writes waits poll: the replica's pool (DATABASE_READ_URL), else ``pool``.
    read_pool: AsyncConnectionPool
    publisher: CommandPublisher
    auth: Authenticator
    definitions: DefinitionsCache
    commands: Commands
    off_loop: OffLoop
    live: LiveHub
    # Overload: ingestion shed past a storage backlog; heavy queries queued on a semaphore.
    backlog: BacklogMonitor
    heavy: HeavyQueries
    started_at: float = field(default_factory=time.monotonic)
    # Workers' figures and heartbeats, reported over NATS (gateway/metrics.py).
    reports: WorkerReports = field(default_factory=WorkerReports)
    # /latest's and POST /query's readers: through the caches, when they are on (gateway/latest_wiring.py).
    reads: CachedReads | None = None

    @property
    def latest_reads(self) -> LatestReads:
        """/latest's reader (the lifespan sets ``reads`` before any request)."""
        assert self.reads is not None
        return self.reads.latest

    @property
    def query_reads(self) -> QueryReads | None:
        """POST /query's cache reader, or None when the query cache is off."""
        return None if self.reads is None else self.reads.queries
