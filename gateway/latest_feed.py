"""Feeds the latest-value cache from the stored notices, and tells a request whether the cache may answer.

Its own NATS connection, so that its callbacks (disconnect, reconnect, slow consumer) concern only this
subscription, and so that a PING on it orders after every notice the server had routed to it.

Why a request waits for one PING/PONG before answering from the cache (``synced``): the ingest worker publishes its
notices (telemetry_schemas.notices.StoredNotices) only after their points committed; nats-server hands a published
message to the core subscribers' outbound buffers while processing the publish, before JetStream stores it, so
before the latest_values projection can fetch it and commit its row. A client that saw a value (from the database
or another gateway's cache, itself a database row) and then asks here has this process's PING written after that
notice on the same connection, so when the PONG is back the notice has been handled (the subscription's queue is
empty and its callback runs without awaiting): the entry it concerns is pending, and the request reads the
database. Concurrent requests share one PING sent after they all arrived. One nats-server only: in a NATS cluster
the notice may reach this process's server after the projection's (the lifespan leaves the cache off).
"""

import asyncio
import contextlib
import time
from datetime import datetime

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError

from gateway.latest_cache import LatestCache
from gateway.query_cache import PENDING_S, QueryCache
from telemetry_core.nats_flush import flush
from telemetry_core.topology import STORING_SUBJECT, stored_subject
from telemetry_schemas.notices import PointsStoring

SUBJECT = stored_subject(">")  # the NOTICES stream's own filter (device ids hold no dots today)
# A PONG slower than this: answer from the database (the wait is counted in the request's latency).
SYNC_TIMEOUT_S = 0.25
# Messages waiting in the subscription after the PONG are handled by its task within a loop turn or two.
_SETTLE_TURNS = 3


class _Latest(msgspec.Struct):
    timestamp: datetime


class _Metric(msgspec.Struct):
    metric_name: str
    first_time: datetime
    last_time: datetime
    latest: _Latest


class _Notice(msgspec.Struct):
    """The part of telemetry_schemas.notices.PointsStored the cache needs (other fields are skipped)."""

    device_id: str
    points_seq: int
    metrics: list[_Metric]
    rollups_applied: bool = False


class _Notices(msgspec.Struct):
    """telemetry_schemas.notices.StoredNotices, as far as the cache reads it (empty: a lone notice, the old shape)."""

    notices: list[_Notice] = []


_decoder = msgspec.json.Decoder(_Notice)
_batch_decoder = msgspec.json.Decoder(_Notices)
_storing_decoder = msgspec.json.Decoder(PointsStoring)


class LatestFeed:
    """The stored-notice subscription of one gateway process, and the read barrier of its caches.

    ``cache``: the latest-value cache; ``queries``: the query cache (gateway/query_cache.py), fed the same notices.
    """

    def __init__(
        self,
        cache: LatestCache,
        url: list[str],
        log: structlog.stdlib.BoundLogger,
        subject: str = SUBJECT,
        queries: QueryCache | None = None,
        storing_subject: str = STORING_SUBJECT,
    ) -> None:
        self.cache = cache
        self.queries = queries
        self._storing_subject = storing_subject  # tests give their own
        self._storing_sub: Subscription | None = None
        self._subject = subject  # tests give their own, outside the NOTICES stream
        self._url = url
        self._log = log
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._next: asyncio.Future[bool] | None = None  # the round waiting for the next PING
        self._pinging = False
        self._task: asyncio.Task[None] | None = None  # kept: the loop holds tasks only weakly
        self.notices = 0

    async def start(self, *, pending_msgs_limit: int = 65_536) -> None:
        """Connect, subscribe and, once the server has the subscription, let the cache answer."""
        self._nc = await nats.connect(
            self._url, name="telemetry-gateway-latest", max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            connect_timeout=2, allow_reconnect=True, error_cb=self._on_error,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
        )  # fmt: skip
        self._sub = await self._nc.subscribe(self._subject, cb=self._on_notice, pending_msgs_limit=pending_msgs_limit)
        if self.queries is not None:  # on the same connection: the read barrier orders it too
            self._storing_sub = await self._nc.subscribe(
                self._storing_subject, cb=self._on_storing, pending_msgs_limit=pending_msgs_limit
            )
        await flush(self._nc)  # the SUBs before the PING (telemetry_core/nats_flush.py)
        self._each("enable")

    async def stop(self) -> None:
        """Stop answering and close the connection (bounded: the server may be gone)."""
        self._each("disable")
        if self._nc is not None:
            with contextlib.suppress(Exception):  # already closed, or the server is gone
                await asyncio.wait_for(self._nc.close(), 2.0)

    async def _on_notice(self, msg: Msg) -> None:
        # No await in here: the subscription's task handles every queued message in one loop turn (see synced).
        try:
            notices = _batch_decoder.decode(msg.data).notices or [_decoder.decode(msg.data)]
        except msgspec.DecodeError as exc:
            # Not knowing what it announced, no entry can be trusted.
            self._log.warning("latest_cache_bad_notice", subject=msg.subject, error=str(exc))
            self._each("drop_all")
            return
        queries = self.queries
        for notice in notices:
            self.notices += 1
            for metric in notice.metrics:
                series = (notice.device_id, metric.metric_name)
                self.cache.notice(series, (metric.latest.timestamp, notice.points_seq))
                if queries is not None:
                    queries.notice(series, metric.first_time, metric.last_time, notice.points_seq)
            if queries is not None and not notice.rollups_applied:
                queries.hold(time.monotonic())

    async def _on_storing(self, msg: Msg) -> None:
        # No await in here either: the same loop-turn argument as _on_notice.
        queries = self.queries
        if queries is None:
            return
        now = time.monotonic()
        try:
            storing = _storing_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            self._log.warning("query_cache_bad_announcement", error=str(exc))
            queries.hold(now, PENDING_S)  # not knowing which ranges are about to change, keep nothing for a while
            return
        for m in storing.messages:
            for metric in m.metric_names:
                queries.storing((m.device_id, metric), m.first_time, m.last_time, m.points_seq, now)

    def _each(self, action: str) -> None:
        """enable, disable or drop_all on every cache this feed feeds."""
        if action == "enable":
            self.cache.enable()
            if self.queries is not None:
                self.queries.enable(time.monotonic())  # the query cache also starts its start-up hold
            return
        getattr(self.cache, action)()
        if self.queries is not None:
            getattr(self.queries, action)()

    async def _on_disconnected(self) -> None:
        self._each("disable")  # notices published until we are back are lost to us
        self._log.warning("latest_cache_off", reason="nats disconnected")

    async def _on_reconnected(self) -> None:
        # nats-py has re-sent the subscription and flushed before calling this: the server has it.
        self._each("enable")
        self._log.info("latest_cache_on", reason="nats reconnected")

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError) and exc.sub is self._storing_sub and self.queries is not None:
            # An announcement was dropped: any range may be about to change, so keep nothing for a while.
            self.queries.hold(time.monotonic(), PENDING_S)
            self._log.warning("query_cache_held", reason="slow consumer: announcements dropped")
        elif isinstance(exc, SlowConsumerError) and exc.sub is self._sub:
            self._each("drop_all")  # a notice was dropped: every entry might be the one it concerned
            self._log.warning("latest_cache_dropped", reason="slow consumer: notices dropped")
        else:
            self._log.warning("latest_cache_nats_error", error=str(exc))

    async def synced(self) -> bool:
        """True once every notice routed to this process before now has been applied to the cache."""
        if self._nc is None or self._sub is None or not self.cache.enabled:
            return False
        epoch = self.cache.epoch
        round_ = self._next
        if round_ is None:
            round_ = self._next = asyncio.get_running_loop().create_future()
            if not self._pinging:
                self._pinging = True
                self._task = asyncio.get_running_loop().create_task(self._ping_rounds())
        if not await asyncio.shield(round_):
            return False
        for _ in range(_SETTLE_TURNS):
            if self._queued() == 0:
                break
            await asyncio.sleep(0)
        return self._queued() == 0 and self.cache.enabled and self.cache.epoch == epoch

    def _queued(self) -> int:
        """Messages received but not yet applied, on both subscriptions (notices, announcements)."""
        subs = (self._sub, self._storing_sub)
        return sum(sub.pending_msgs for sub in subs if sub is not None)

    async def _ping_rounds(self) -> None:
        """One PING per round; requests arriving during a round wait for the next (their PING is sent after them)."""
        try:
            while self._next is not None:
                waiting, self._next = self._next, None
                ok = True
                try:
                    assert self._nc is not None
                    # nats-py's own flush: this connection writes nothing but its SUBs (flushed in start) and
                    # PINGs, so no command of ours is pending behind the PING (telemetry_core/nats_flush.py).
                    await self._nc.flush(timeout=SYNC_TIMEOUT_S)  # type: ignore[arg-type]
                except Exception:
                    ok = False
                waiting.set_result(ok)
        finally:
            self._pinging = False
