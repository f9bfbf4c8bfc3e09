"""One open socket: a JetStream ordered consumer on the subscription's subjects → filter → coalescer → socket.

Why an ordered JetStream consumer and not a core NATS subscription: messages then carry their POINTS
stream sequence, so ``?since=`` replays what a client missed and continues live from the same consumer,
with no gap and no duplicate between the two; and the consumer starts exactly where asked. It is
ephemeral, in memory on the server, and filtered to one stored subject per named device.

Three tasks per socket, none of which can hold up ingestion or the other sockets:
* the NATS callback decodes, filters and buffers (bounded; live points beyond the bound push out the
  oldest, counted). While replaying (``since``) it waits for room instead, so a replay never drops;
* the sender sends at most one message per ``max_frequency`` ms and is the only one blocked by a slow
  client;
* the reader notices the client going away; a keep-alive re-writes the subscription before its TTL.
"""

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import structlog
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from gateway.live.coalescer import Coalescer
from gateway.live.filters import PointFilter, filter_subjects, streamable
from gateway.live.subscriptions_kv import Stored, SubscriptionStore
from gateway.live.wire import message_bytes
from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import POINTS_STREAM

log = structlog.get_logger()
_encoder = msgspec.json.Encoder()
# Messages the NATS client may queue for one socket before it drops them; the ordered consumer then
# notices the gap and restarts from the last sequence it handled, so nothing is lost, only re-fetched.
_PENDING_MSGS = 2_000
_PENDING_BYTES = 32 * 1024 * 1024

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SERVER_ERROR = 1011


class StreamSession:
    """Serves one socket until the client leaves, the subscription is cancelled, or the gateway stops."""

    def __init__(self, socket: WebSocket[Any, Any, Any], stored: Stored, *, js: JetStreamContext,
                 store: SubscriptionStore, validator: PointsValidator, buffer_points: int, keepalive_s: float,
                 since: int | None) -> None:  # fmt: skip
        self.socket = socket
        self.stored = stored
        self.subscription_id = stored.subscription.subscription_id
        self._js, self._store, self._validator = js, store, validator
        self._keepalive_s = keepalive_s
        self._since = since
        sub = stored.subscription
        self._filter = PointFilter.of(sub.metric_names, sub.tags, sub.filter_condition)
        self._period_s = sub.max_frequency / 1000
        self.coalescer = Coalescer(buffer_points)
        self._data = asyncio.Event()
        self._room = asyncio.Event()
        self._closing = asyncio.Event()
        self._close_code, self._close_reason = CLOSE_NORMAL, ""
        self._replay_until = 0
        self._finished = False
        self._sub: Any = None
        self.messages_sent = 0

    async def open(self) -> None:
        """Create the JetStream consumer (before the socket is accepted: a connected client gets every later point)."""
        self._sub = await self._subscribe()

    def close(self, code: int, reason: str) -> None:
        """Ask the session to close its socket (from another task: DELETE seen, gateway stopping)."""
        if not self._closing.is_set():
            self._close_code, self._close_reason = code, reason
            self._closing.set()

    async def run(self) -> None:
        """Stream until closed (after ``open``); everything this socket holds is released before returning."""
        tasks = [
            asyncio.create_task(self._send_loop(), name="send"),
            asyncio.create_task(self._read_loop(), name="read"),
            asyncio.create_task(self._keepalive_loop(), name="keepalive"),
            asyncio.create_task(self._closing.wait(), name="closing"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.get_name() != "closing" and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    if not isinstance(exc, WebSocketDisconnect):
                        log.warning("stream_task_failed", subscription_id=self.subscription_id, task=task.get_name(),
                                    error=repr(exc))  # fmt: skip
                        self.close(CLOSE_SERVER_ERROR, "stream failed; reconnect with ?since=<sequence_number>")
        finally:
            self._finished = True
            self._room.set()  # a replay waiting for room gives up
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # NATS away: the server drops the ephemeral consumer by itself
                log.info("stream_unsubscribe_failed", error=repr(exc))
        if self._closing.is_set():
            with contextlib.suppress(Exception):  # the client left first
                await self.socket.close(code=self._close_code, reason=self._close_reason)

    async def _subscribe(self) -> Any:
        subjects = filter_subjects(self.stored.subscription.device_ids)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        if len(subjects) > 1:
            config.filter_subjects = subjects
        if self._since is not None:
            # Everything up to the stream's current end is replay: buffered without dropping.
            self._replay_until = (await self._js.stream_info(POINTS_STREAM)).state.last_seq
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._since + 1
        return await self._js.subscribe(
            subjects[0], stream=POINTS_STREAM, ordered_consumer=True, cb=self._on_message, config=config,
            pending_msgs_limit=_PENDING_MSGS, pending_bytes_limit=_PENDING_BYTES,
        )  # fmt: skip

    async def _on_message(self, msg: Msg) -> None:
        sequence = msg.metadata.sequence.stream
        admitted = streamable(self._validator, msg)
        points = self._filter.select(admitted, sequence) if admitted else []
        replaying = sequence <= self._replay_until
        if replaying:
            while points and len(self.coalescer) and self.coalescer.room < len(points) and not self._finished:
                self._room.clear()
                self._data.set()
                await self._room.wait()
        self.coalescer.add(points, sequence, drop=not replaying)
        if self.coalescer.pending:
            self._data.set()

    async def _send_loop(self) -> None:
        last_sent = -self._period_s
        while True:
            await self._data.wait()
            delay = last_sent + self._period_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._data.clear()
            flush = self.coalescer.take()
            self._room.set()
            if not flush.points and not flush.dropped:
                continue
            last_sent = time.monotonic()
            await self.socket.send_data(message_bytes(self.subscription_id, flush), mode="text")
            self.messages_sent += 1

    async def _read_loop(self) -> None:
        # Clients have nothing to say; reading is how a close or a dropped connection is noticed.
        while True:
            await self.socket.receive_data(mode="text")

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive_s)
            try:
                touched = await self._store.touch(self.stored)
            except Exception as exc:  # NATS away: try again next time; the TTL is three intervals long
                log.info("subscription_touch_failed", subscription_id=self.subscription_id, error=repr(exc))
                continue
            if touched is None:
                self.close(CLOSE_NORMAL, "subscription cancelled")
                return
            self.stored = touched
