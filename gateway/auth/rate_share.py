"""Rate limits hold across gateway copies: each copy tells the others what its callers spent.

``telemetry run`` starts one gateway per core on one port, and the kernel spreads connections over them;
without this, a key got its limit at each copy. Every ``SHARE_EVERY_S`` a copy whose limits are on publishes
what each key spent there since the last time (core NATS, not stored: a lost message only lets a key through a
little more), and takes what the other copies report from its own buckets. A key can exceed its limit by what
the other copies let through in one interval (at most ``rate x SHARE_EVERY_S`` per other copy, plus the burst).
"""

import asyncio
import contextlib
import uuid

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from gateway.auth.rate_limit import TokenBuckets
from gateway.metrics import RATE_LIMIT_SHARED
from telemetry_core.stopping import bounded

SUBJECT = "telemetry.ratelimit.spent"
SHARE_EVERY_S = 0.1


class Spent(msgspec.Struct, frozen=True):
    """What one copy's callers spent in one interval, per limit key."""

    sender: str
    requests: dict[str, float] = {}
    points: dict[str, float] = {}


_decoder = msgspec.json.Decoder(Spent)


class RateShare:
    """Publishes this copy's spending and applies the others'; does nothing while both limits are off."""

    def __init__(self, nc: Client, requests: TokenBuckets, points: TokenBuckets,
                 log: structlog.stdlib.BoundLogger, subject: str = SUBJECT) -> None:  # fmt: skip
        """Share the spending of ``requests`` and ``points`` over ``nc``, on ``subject``."""
        self._nc, self._requests, self._points, self._log = nc, requests, points, log
        self._subject = subject
        self._sender = uuid.uuid4().hex
        self._shared_requests, self._shared_points = (
            RATE_LIMIT_SHARED.labels("requests"),
            RATE_LIMIT_SHARED.labels("points"),
        )
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Whether any limit is on (otherwise nothing is spent, so there is nothing to share)."""
        return self._requests.rate > 0 or self._points.rate > 0

    async def start(self) -> None:
        """Subscribe to the other copies' reports and start publishing this one's."""
        if not self.active:
            return
        self._requests.spent, self._points.spent = {}, {}  # from now on the buckets record what is spent
        self._sub = await self._nc.subscribe(self._subject, cb=self._heard)
        self._task = asyncio.create_task(self._share_until_cancelled())

    async def stop(self) -> None:
        """Stop publishing and listening (what was spent since the last report stays here)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            await bounded(self._sub.unsubscribe, 1.0, "rate_share_unsubscribe", self._log)

    async def _share_until_cancelled(self) -> None:
        while True:
            await asyncio.sleep(SHARE_EVERY_S)
            await self.share()

    async def share(self) -> None:
        """Publish what was spent here since the last report, if anything (a NATS outage drops it: logged)."""
        requests, points = self._requests.take_spent(), self._points.take_spent()
        if not requests and not points:
            return
        body = msgspec.json.encode(Spent(sender=self._sender, requests=requests, points=points))
        try:
            await self._nc.publish(self._subject, body)
        except Exception as exc:  # the client reconnects; the other copies under-count one interval
            self._log.warning("rate_share_publish_failed", error=repr(exc))

    async def _heard(self, msg: Msg) -> None:
        try:
            spent = _decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            self._log.warning("rate_share_unreadable", error=str(exc))
            return
        if spent.sender == self._sender:
            return
        for key, cost in spent.requests.items():
            self._requests.absorb(key, cost)
        for key, cost in spent.points.items():
            self._points.absorb(key, cost)
        self._shared_requests.inc(sum(spent.requests.values()))
        self._shared_points.inc(sum(spent.points.values()))
