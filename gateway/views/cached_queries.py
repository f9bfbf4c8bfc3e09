"""POST /query through the gateway's query cache (gateway/query_cache.py) when it is on."""

import time
from collections.abc import Awaitable, Callable

import msgspec

from gateway.latest_feed import LatestFeed
from gateway.metrics import QUERY_CACHE_ANSWERS
from gateway.query_cache import QueryCache
from telemetry_schemas.api.queries import QueryRequest, TelemetryDataResponse

Compute = Callable[[], Awaitable[TelemetryDataResponse]]
_key = msgspec.json.Encoder().encode


class QueryReads:
    """One-series queries answered from the cache after the feed's read barrier; everything else computed."""

    def __init__(self, cache: QueryCache, feed: LatestFeed) -> None:
        self.cache = cache
        self.feed = feed
        self._hit = QUERY_CACHE_ANSWERS.labels("hit")
        self._miss = QUERY_CACHE_ANSWERS.labels("miss")

    async def answer(self, body: QueryRequest, compute: Compute) -> TelemetryDataResponse:
        """``compute()``'s answer, or the same answer kept from an earlier read that no notice has made stale."""
        if body.devices is None or len(body.devices) != 1 or len(body.metrics) != 1:
            return await compute()  # several series: many notices concern it, few repeat
        cache, key = self.cache, _key(body)
        # The barrier (one NATS PING, shared by concurrent requests) only when an entry may answer.
        if cache.get(key, time.monotonic()) is not None and await self.feed.synced():
            found = cache.get(key, time.monotonic())  # again: notices applied during the barrier may drop it
            if found is not None:
                self._hit.inc()
                return found
        self._miss.inc()
        fill = cache.begin_fill((body.devices[0], body.metrics[0]), (body.start_time, body.end_time), time.monotonic())
        answer = None
        try:
            answer = await compute()
        finally:
            if fill is not None:
                cache.finish_fill(fill, key, answer, time.monotonic())
        return answer
