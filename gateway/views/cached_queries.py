"""One-series reads (POST /query, GET …/range, GET /aggregated?device_id=…) through the query cache when it is on."""

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from gateway.latest_feed import LatestFeed
from gateway.metrics import QUERY_CACHE_ANSWERS
from gateway.query_cache import Answer, QueryCache, Range, Series
from telemetry_schemas.api.queries import QueryRequest

A = TypeVar("A", bound=Answer)
_encode = msgspec.json.Encoder().encode


def query_key(body: QueryRequest) -> tuple[bytes, Series] | None:
    """POST /query's cache key and series, or None when it asks for several series (many notices concern it)."""
    if body.devices is None or len(body.devices) != 1 or len(body.metrics) != 1:
        return None
    return b"query" + _encode(body), (body.devices[0], body.metrics[0])


def read_key(route: str, *parts: object) -> bytes:
    """The cache key of a GET route's read: the route and every argument that shapes its answer."""
    return _encode((route, *parts))


class QueryReads:
    """Answers kept from earlier reads no notice has made stale, given after the feed's read barrier."""

    def __init__(self, cache: QueryCache, feed: LatestFeed) -> None:
        self.cache = cache
        self.feed = feed
        self._hit = QUERY_CACHE_ANSWERS.labels("hit")
        self._miss = QUERY_CACHE_ANSWERS.labels("miss")

    async def answer(self, key: bytes, series: Series, span: Range, compute: Callable[[], Awaitable[A]]) -> A:
        """``compute()``'s answer for ``series`` over ``span``, or the same answer kept under ``key``."""
        cache = self.cache
        # The barrier (one NATS PING, shared by concurrent requests) only when an entry may answer.
        if cache.get(key, time.monotonic()) is not None and await self.feed.synced():
            found = cache.get(key, time.monotonic())  # again: notices applied during the barrier may drop it
            if found is not None:
                self._hit.inc()
                return found  # type: ignore[return-value]  # kept under this key by this route: the same type
        self._miss.inc()
        fill = cache.begin_fill(series, span, time.monotonic())
        answer = None
        try:
            answer = await compute()
        finally:
            if fill is not None:
                cache.finish_fill(fill, key, answer, time.monotonic())
        return answer
