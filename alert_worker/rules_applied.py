"""Answers gateways asking "have you applied rule event N?" the moment it is true (core NATS request/reply).

A rule write (create, update, enable, delete) answers only once every live alert engine evaluates
points with the change (read-your-writes, gateway/commands/engines_applied.py). The engine receives rule
events as they arrive (the RuleIndex follower) and each governs the points after its ``points_seq`` from then
on (alert_worker/rules.py), so the only delay left was telling: the heartbeat row in
PostgreSQL, written between fetches and polled by the gateway. Here a gateway publishes the sequence on
RULES_APPLIED with a reply inbox; every engine replies with its name and applied sequence as soon as
its follower has applied that sequence (at once if it already has; at most ``max_wait_s`` later, else
not at all — the gateway's own deadline then decides). The heartbeat row stays: it says which engines
are alive, and serves gateways of an older release.
"""

import asyncio
from contextlib import suppress
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from telemetry_core.follower import Follower
from telemetry_core.rules_applied import Applied, applied_encoder
from telemetry_core.topology import RULES_APPLIED


class AppliedResponder:
    """Subscribes to RULES_APPLIED and replies for one engine."""

    def __init__(self, nc: Client, partition: str, follower: Follower, log: structlog.stdlib.BoundLogger,
                 max_wait_s: float = 10.0) -> None:  # fmt: skip
        self._nc, self._partition, self._follower, self._log = nc, partition, follower, log
        self._max_wait_s = max_wait_s
        self._sub: Any = None
        self._waiting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start answering."""
        self._sub = await self._nc.subscribe(RULES_APPLIED, cb=self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        try:
            seq = int(msg.data)
        except ValueError:
            self._log.warning("rules_applied_bad_request", data=msg.data[:64])
            return
        if not msg.reply:
            return
        if self._follower.last_seq >= seq:
            await self._reply(msg.reply)
            return
        # Not yet: wait in a task of its own, so requests for other sequences are not held behind this one.
        task = asyncio.create_task(self._reply_when_applied(msg.reply, seq))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _reply_when_applied(self, reply: str, seq: int) -> None:
        if await self._follower.wait_for(seq, self._max_wait_s):
            await self._reply(reply)

    async def _reply(self, reply: str) -> None:
        body = applied_encoder.encode(Applied(self._partition, self._follower.last_seq))
        try:
            await self._nc.publish(reply, body)
        except Exception as exc:  # NATS away: the gateway's deadline (or the heartbeat) answers for us
            self._log.warning("rules_applied_reply_failed", error=repr(exc))

    async def stop(self) -> None:
        """Stop answering (bounded: NATS may be gone)."""
        for task in list(self._waiting):
            task.cancel()
        if self._sub is not None:
            with suppress(Exception):
                await asyncio.wait_for(self._sub.unsubscribe(), 1.0)
