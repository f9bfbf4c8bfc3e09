"""The gateway's real-time side: its open sockets, the cancel watcher, and the figures /health/detailed shows.

Cancellation reaches every copy through the SUBSCRIPTIONS bucket itself: each gateway watches the
bucket's subjects (an ordered consumer from "now") and closes its own sockets of a key that got a
delete or purge marker. The socket's keep-alive is the backstop if a marker is ever missed.
"""

from collections import defaultdict
from typing import Any

import structlog
from litestar import WebSocket
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from gateway.live.connect_token import ConnectTokens
from gateway.live.subscriptions_kv import Stored, SubscriptionStore
from gateway.live.ws_stream import CLOSE_GOING_AWAY, CLOSE_NORMAL, CLOSE_SERVER_ERROR, StreamSession
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import SUBSCRIPTIONS_BUCKET

log = structlog.get_logger()
_KV_PREFIX = f"$KV.{SUBSCRIPTIONS_BUCKET}."
_KV_OPERATION = "KV-Operation"


class LiveHub:
    """Open sockets by subscription id; start with ``start()``, serve sockets with ``serve()``."""

    def __init__(self, js: JetStreamContext, store: SubscriptionStore, tokens: ConnectTokens,
                 validator: PointsValidator, settings: Settings) -> None:  # fmt: skip
        self.js, self.store, self.tokens, self._validator = js, store, tokens, validator
        self._buffer_points = settings.stream_buffer_points
        self.ttl_s = settings.subscription_ttl_s
        self._keepalive_s = settings.subscription_ttl_s / 3
        self.sessions: dict[str, set[StreamSession]] = defaultdict(set)
        self._watcher: Any = None
        self.opened_total = 0
        self._dropped_closed = 0  # dropped by sockets already closed
        self._sent_closed = 0

    async def start(self) -> None:
        """Watch the bucket for cancellations."""
        self._watcher = await self.js.subscribe(
            f"{_KV_PREFIX}>", ordered_consumer=True, cb=self._on_change,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )  # fmt: skip

    async def stop(self) -> None:
        """Close every socket (the client may reconnect to another copy) and stop watching."""
        for sessions in list(self.sessions.values()):
            for session in list(sessions):
                session.close(CLOSE_GOING_AWAY, "gateway shutting down; reconnect with ?since=<sequence_number>")
        if self._watcher is not None:
            try:
                await self._watcher.unsubscribe()
            except Exception as exc:
                log.info("subscription_watch_unsubscribe_failed", error=repr(exc))

    async def _on_change(self, msg: Msg) -> None:
        operation = msg.headers.get(_KV_OPERATION) if msg.headers else None
        if operation not in ("DEL", "PURGE"):
            return
        subscription_id = msg.subject[len(_KV_PREFIX) :]
        for session in list(self.sessions.get(subscription_id, ())):
            session.close(CLOSE_NORMAL, "subscription cancelled")

    async def serve(self, socket: WebSocket[Any, Any, Any], stored: Stored, since: int | None) -> None:
        """Stream to an authenticated socket until it closes: the consumer first, then the accept."""
        session = StreamSession(socket, stored, js=self.js, store=self.store, validator=self._validator,
                                buffer_points=self._buffer_points, keepalive_s=self._keepalive_s,
                                since=since)  # fmt: skip
        sid = session.subscription_id
        self.sessions[sid].add(session)
        self.opened_total += 1
        log.info("stream_opened", subscription_id=sid, since=since)
        try:
            try:
                await session.open()
            except Exception as exc:  # NATS away: say so on the socket rather than fail the handshake
                log.warning("stream_open_failed", subscription_id=sid, error=repr(exc))
                await socket.accept()
                await socket.close(CLOSE_SERVER_ERROR, "stream unavailable; retry shortly")
                return
            await socket.accept()
            await session.run()
        finally:
            self.sessions[sid].discard(session)
            if not self.sessions[sid]:
                del self.sessions[sid]
            self._dropped_closed += session.coalescer.dropped_total
            self._sent_closed += session.messages_sent
            log.info("stream_closed", subscription_id=sid, messages=session.messages_sent,
                     dropped=session.coalescer.dropped_total)  # fmt: skip

    def figures(self) -> dict[str, int]:
        """What /health/detailed reports under real_time_stream."""
        open_sessions = [s for sessions in self.sessions.values() for s in sessions]
        return {
            "open_sockets": len(open_sessions),
            "subscriptions_streaming": len(self.sessions),
            "sockets_opened_total": self.opened_total,
            "messages_sent_total": self._sent_closed + sum(s.messages_sent for s in open_sessions),
            "dropped_points_total": self._dropped_closed + sum(s.coalescer.dropped_total for s in open_sessions),
            "dropped_points_open_sockets": sum(s.coalescer.dropped_total for s in open_sessions),
        }
