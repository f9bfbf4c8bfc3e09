"""The latest-value cache filled ahead of reads: a series a notice announced is read before anyone asks for it.

Why: the first read of a series missed the cache and paid a PostgreSQL round trip (a dashboard opening, and every
read of ``make bench-peers``' sequential q1, which visits 500 series once each: p50 0.59-0.65 ms cold against
0.44-0.48 ms from the cache in one probe). Each gateway process remembers the series its notices announce that its
cache does not hold (``LatestCache.take_noticed``, bounded by the room left), and every ``interval_s`` fills those
noticed during the interval before the last one (so that the projection has usually committed their
latest_values rows) with one statement per ``BATCH`` series.

A prefill is an ordinary fill (``fill_series`` in gateway/views/latest.py): kept only under the cache's rules
(gateway/latest_cache.py), so it changes how often the cache answers, never what it answers. One that is not kept
(latest_values not caught up with the raw points yet) is tried again 2, 4 and 8 rounds later, then left to the
first read. Cost: one row read per new series per gateway process, not per point. A series the cache holds is
filled again only when a notice makes it pending after a request read it (a dashboard polling a device that
wrote since: the next poll is a hit), at most ``REFILLS_PER_READ`` (8) times per read (fewer for a series written
more often than that between reads), so the refills cost a series no more than its reads' misses would
(gateway/latest_cache.py). ~11 µs of PostgreSQL per series (the
raw-points check probes every partition from the row's day on), ~20 ms per statement of 1,000.

Rounds wait while ``busy()`` says so (the gateway passes: storage is over a second behind ingestion): reads made
faster must not slow a saturated ingest down (a 1 M-point load measured 3-6 % fewer points/s visible with the
rounds running beside it); what was noticed meanwhile is filled once the backlog is gone.
"""

import asyncio
from collections.abc import Callable

import structlog
from psycopg_pool import AsyncConnectionPool

from gateway.latest_cache import Key, LatestCache
from gateway.metrics import LATEST_CACHE_PREFILLS
from gateway.views.latest import fill_series
from telemetry_core.stopping import Stopped, sleep_or_stop, until_stopped

BATCH = 1000  # series per statement (a few milliseconds of PostgreSQL each)
MAX_ATTEMPTS = 4
YIELDS_AT_BACKLOG_S = 1.0  # the gateway's busy(): storage this many seconds behind ingestion (gateway/backlog.py)


class LatestPrefill:
    """Fills the series the cache's notices announced, in rounds (``run``); one per gateway process."""

    def __init__(
        self,
        cache: LatestCache,
        pool: AsyncConnectionPool,
        log: structlog.stdlib.BoundLogger,
        interval_s: float,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cache, self.pool, self.interval_s, self.busy = cache, pool, interval_s, busy
        self._log = log
        self._waiting: list[Key] = []  # noticed during the last interval: filled at the next round
        self._retries: dict[Key, tuple[int, int]] = {}  # not kept yet: (round due, attempts made)
        self._round = 0
        self._waited = False  # rounds were skipped (busy): what was noticed meanwhile is old enough to fill now
        cache.start_prefill()

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``interval_s`` until the stop signal; a failed round is logged, its series left to reads."""
        while not await sleep_or_stop(stop, self.interval_s):
            if self.busy():
                self._waited = True  # no round: retries keep their turn, new series stay noticed
                continue
            try:
                await until_stopped(stop, self.round())
            except Stopped:
                return
            except Exception as exc:  # the database is away: reads will fill (or fail) as without prefill
                self._log.warning("latest_prefill_failed", error=str(exc))

    async def round(self) -> int:
        """Fill what was noticed before the last round and the retries due now; returns how many were kept."""
        self._round += 1
        # A polled entry made pending is read at this round: the next poll may come before the one after. A new
        # series waits one round more, so that its latest_values row is usually committed; a refill read before
        # the projection committed its row is not kept, and tried again two rounds later.
        ready, self._waiting = self._waiting + self.cache.take_refills(), self.cache.take_noticed()
        if self._waited:  # noticed before or during the wait, not in the last interval only: no reason to delay
            ready, self._waiting, self._waited = ready + self._waiting, [], False
        due = [key for key, (at, _) in self._retries.items() if at <= self._round]
        attempts = {key: self._retries.pop(key)[1] for key in due}
        keys = [key for key in dict.fromkeys(due + ready) if self.cache.needs_fill(key)]
        kept = 0
        for start in range(0, len(keys), BATCH):
            chunk = keys[start : start + BATCH]
            missed = set(await fill_series(self.pool, self.cache, chunk))
            for key in chunk:
                made = attempts.get(key, 0) + 1
                if key not in missed:
                    kept += 1
                elif made < MAX_ATTEMPTS:
                    self._retries[key] = (self._round + 2**made, made)
            LATEST_CACHE_PREFILLS.labels("kept").inc(len(chunk) - len(missed))
            LATEST_CACHE_PREFILLS.labels("not_kept").inc(len(missed))
        return kept
