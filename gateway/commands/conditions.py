"""The readers a write can wait for, as ``Condition``s for ``wait_visible``."""

from psycopg_pool import AsyncConnectionPool

from gateway.commands.visibility import Condition, polled
from gateway.views.alert_engines import engines_behind
from gateway.views.checkpoints import applied_up_to
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.topology import EVENTS_STREAM

# The cache's own wait needs a bound; wait_visible's deadline is the one that counts.
_CACHE_BOUND_S = 3600.0


def read_model(pool: AsyncConnectionPool, projection: str) -> Condition:
    """The projection's EVENTS checkpoint has reached the sequence."""

    async def reached(seq: int) -> bool:
        return await applied_up_to(pool, projection, EVENTS_STREAM) >= seq

    return polled(reached)


def alert_engines(pool: AsyncConnectionPool) -> Condition:
    """Every live alert engine copy has applied rule events up to the sequence."""

    async def reached(seq: int) -> bool:
        return not await engines_behind(pool, seq)

    return polled(reached)


def definitions_cache(cache: DefinitionsCache) -> Condition:
    """The gateway's in-memory metric definitions (used to validate points) have applied the sequence."""

    async def reached(seq: int) -> bool:
        return await cache.wait_for(seq, _CACHE_BOUND_S)

    return reached
