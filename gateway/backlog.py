"""How far storage is behind ingestion, measured off the request path, and whether to shed ingestion.

The backlog is the age of the oldest point the ingest workers have not even fetched yet: the message just
after the consumer's delivered floor, when the consumer has messages pending. Its JetStream timestamp is when
the gateway acknowledged it to a client, so the age is how long points wait before storage starts on them.
Not the ack floor: one message held back (in a retry back-off, or in the 30 s ack wait after an ingest
worker was killed) would stop the floor and shed every client's writes while storage keeps up.

Measured every ``interval_s`` by one task per gateway; requests only read the cached figure, which counts
only while fresh (a gateway that cannot measure — NATS away — sheds nothing: the publish says what is wrong).
"""

import asyncio
import contextlib
import math
import time
from datetime import UTC, datetime

import structlog
from nats.js import JetStreamContext

from gateway.errors import ServiceBusy
from gateway.metrics import INGEST_BACKLOG_SECONDS, INGEST_SHEDDING, OVERLOAD_REFUSALS
from telemetry_core.topology import INGEST

_MAX_RETRY_AFTER_S = 60


def stream_time(value: object) -> datetime | None:
    """A JetStream message time: the client leaves it as RFC 3339 text with nanoseconds ("…T06:50:00.123456789Z")."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.rstrip("Z")
    offset = "+00:00"
    for sign in ("+", "-"):
        head, sep, tail = text[10:].rpartition(sign)
        if sep and ":" in tail:
            text, offset = text[:10] + head, sign + tail
            break
    whole, _, fraction = text.partition(".")
    try:
        return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}{offset}")
    except ValueError:
        return None


class BacklogMonitor:
    """The ingest consumer's backlog in seconds, refreshed by a background task; ``shedding`` past the limit."""

    def __init__(
        self, js: JetStreamContext, max_backlog_s: float, interval_s: float, stream: str = INGEST.stream,
        durable: str = INGEST.durable,
    ) -> None:  # fmt: skip
        self.js = js
        self.max_backlog_s = max_backlog_s
        self.interval_s = interval_s
        self.stream = stream
        self.durable = durable
        self.backlog_s = 0.0
        self.pending_messages = 0
        self.measured_at: float | None = None  # time.monotonic() of the last good measurement
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger().bind(process="gateway")

    @property
    def enabled(self) -> bool:
        """Shedding is off when the limit is 0."""
        return self.max_backlog_s > 0

    @property
    def shedding(self) -> bool:
        """Refuse ingestion: the oldest point not yet stored is older than the limit.

        A failed measurement keeps the last figure: NATS being down already fails the publish with its own 503.
        """
        return self.enabled and self.behind(self.max_backlog_s)

    def behind(self, seconds: float) -> bool:
        """Storage is more than ``seconds`` behind ingestion, by a fresh measurement (background work yields)."""
        fresh = self.measured_at is not None and time.monotonic() - self.measured_at < self.stale_after_s
        return fresh and self.backlog_s > seconds

    @property
    def stale_after_s(self) -> float:
        """A figure older than this (three measurements missed, at least 3 s) no longer sheds anything."""
        return max(3.0, self.interval_s * 3)

    def retry_after_s(self) -> int:
        """Seconds a client should wait: how far over the limit storage is (at least 1, at most 60)."""
        over = self.backlog_s - self.max_backlog_s
        return max(1, min(_MAX_RETRY_AFTER_S, math.ceil(over)))

    def admit(self) -> None:
        """Called first by every ingest route: refuse (503, Retry-After) while shedding, before reading the body."""
        if not self.shedding:
            return
        OVERLOAD_REFUSALS.labels("ingest_backlog").inc()
        raise ServiceBusy(
            f"the service is shedding load: storage is {self.backlog_s:.1f}s behind ingestion, over the "
            f"{self.max_backlog_s:g}s limit (TELEMETRY_MAX_INGEST_BACKLOG); nothing was stored, retry after the "
            "Retry-After seconds",
            retry_after_s=self.retry_after_s(),
        )

    async def start(self) -> None:
        """Measure once, then keep measuring in the background."""
        await self.measure()
        self._task = asyncio.create_task(self._run(), name="backlog-monitor")

    async def stop(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.measure()

    async def measure(self) -> None:
        """Read the consumer's delivered floor and the timestamp of the oldest message not yet fetched."""
        try:
            async with asyncio.timeout(max(1.0, self.interval_s * 2)):
                self.backlog_s, self.pending_messages = await self._backlog()
        except Exception as exc:
            self.last_error = repr(exc)
            self._log.debug("backlog_measure_failed", error=self.last_error)
            return
        self.last_error = None
        self.measured_at = time.monotonic()
        INGEST_BACKLOG_SECONDS.set(round(self.backlog_s, 3))
        INGEST_SHEDDING.set(1 if self.shedding else 0)

    async def _backlog(self) -> tuple[float, int]:
        info = await self.js.consumer_info(self.stream, self.durable)
        waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
        if not info.num_pending:  # everything is fetched: what is in flight is being stored (or retried)
            return 0.0, waiting
        delivered = info.delivered.stream_seq if info.delivered and info.delivered.stream_seq else 0
        subject = info.config.filter_subject or ">"
        # The first message after the delivered floor on the consumer's subjects (next_by_subj skips deleted ones).
        oldest = await self.js.get_msg(self.stream, seq=delivered + 1, subject=subject, next=True)
        stamped = stream_time(oldest.time)
        if stamped is None:
            return 0.0, waiting
        return max(0.0, (datetime.now(UTC) - stamped).total_seconds()), waiting

    def figures(self) -> dict[str, object]:
        """For /health/detailed."""
        age = None if self.measured_at is None else round(time.monotonic() - self.measured_at, 1)
        return {
            "shedding": self.shedding,
            "backlog_s": round(self.backlog_s, 3),
            "max_backlog_s": self.max_backlog_s,
            "pending_messages": self.pending_messages,
            "measured_s_ago": age,
            "measure_error": self.last_error,
        }
