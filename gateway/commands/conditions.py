"""The readers a write can wait for, as ``Condition``s for ``wait_visible``."""

from psycopg_pool import AsyncConnectionPool

from gateway.commands.visibility import MAX_POLL_S, Condition, polled
from gateway.views.checkpoints import applied_up_to
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.topology import EVENTS_STREAM

# The cache's own wait needs a bound; wait_visible's deadline is the one that counts.
_CACHE_BOUND_S = 3600.0


def read_model(pool: AsyncConnectionPool, projection: str, max_poll_s: float = MAX_POLL_S) -> Condition:
    """The projection's EVENTS checkpoint has reached the sequence (polled, at least every ``max_poll_s``)."""

    async def reached(seq: int) -> bool:
        return await applied_up_to(pool, projection, EVENTS_STREAM) >= seq

    return polled(reached, max_poll_s)


def definitions_cache(cache: DefinitionsCache) -> Condition:
    """The gateway's in-memory metric definitions (used to validate points) have applied the sequence."""

    async def reached(seq: int) -> bool:
        return await cache.wait_for(seq, _CACHE_BOUND_S)

    return reached
