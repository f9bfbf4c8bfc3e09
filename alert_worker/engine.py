"""The engine loop of one device partition: points and ticks in, transitions out, state checkpointed.

Per fetched batch: evaluate → publish transitions (await PubAcks) → save changed machines and the
POINTS position in one transaction → ack. A crash anywhere before the ack replays the same inputs
against the last saved state, which yields the same transitions with the same ids; JetStream drops
the duplicates. One task does everything, so machines are never touched concurrently.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from alert_worker import state_store
from alert_worker.emitter import Emitted, Emitter
from alert_worker.evaluator import Evaluator, owns
from telemetry_core.points_validator import PointsValidator
from telemetry_core.topology import POINTS_STREAM, ConsumerSpec, device_of_points_subject
from telemetry_schemas.values import Point


def _points(msg: Msg, validator: PointsValidator) -> list[Point]:
    """The points of a POINTS message that the ingest worker stores too: those of signed (admitted) messages.

    A directly published message counts once the ingest worker has admitted it and re-published its
    good points signed; its unsigned original is never evaluated (points_validator explains why).
    """
    accepted = validator.accepted(msg)
    return [] if accepted is None else accepted.points


class Engine:
    """Runs one partition until stopped."""

    def __init__(self, js: JetStreamContext, pool: AsyncConnectionPool, spec: ConsumerSpec, evaluator: Evaluator,
                 emitter: Emitter, *, partition: int, partitions: int, checkpoint: int, tick_s: float,
                 log: structlog.stdlib.BoundLogger, validator: PointsValidator) -> None:  # fmt: skip
        self.js, self.pool, self.spec, self.evaluator, self.emitter = js, pool, spec, evaluator, emitter
        self.partition, self.partitions, self.checkpoint = partition, partitions, checkpoint
        self.tick_s, self.log, self.validator = tick_s, log, validator
        self.name = spec.durable
        self.resolved_by_operator: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.points_evaluated = 0

    def _evaluate(self, msgs: list[Msg], now: float) -> tuple[list[Emitted], int]:
        out: list[Emitted] = []
        last = self.checkpoint
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            last = max(last, seq)
            if seq <= self.checkpoint:
                continue  # already in the saved state: a redelivery after a lost ack
            # The consumer's filter delivers only this partition's slots; messages stored before POINTS had
            # slots arrive on every partition and are sorted out here.
            if not owns(msg.subject, self.partition, self.partitions):
                continue
            device_id = device_of_points_subject(msg.subject)
            points = _points(msg, self.validator)
            self.points_evaluated += len(points)
            out.extend(self.evaluator.points(device_id, ((f"{seq}:{i}", p) for i, p in enumerate(points)), now))
        return out, last

    async def _commit(self, emitted: list[Emitted], seq: int) -> None:
        if emitted:
            await self.emitter.publish(emitted)
        async with self.pool.connection() as conn:
            await state_store.save(conn, self.name, POINTS_STREAM, self.evaluator.machines, self.evaluator.changed, seq)
        self.evaluator.changed.clear()
        self.checkpoint = seq

    async def heartbeat(self, rules_seq: int) -> None:
        """Record which rule events are applied (gateways wait on it) and that this copy is alive."""
        async with self.pool.connection() as conn:
            await state_store.heartbeat(conn, self.name, rules_seq, self.evaluator.late_points)

    async def run(self, stop: asyncio.Event, rules_seq: Callable[[], int]) -> None:
        """Fetch, evaluate, tick and checkpoint until ``stop`` is set."""
        sub = await self.js.pull_subscribe_bind(self.spec.durable, self.spec.stream)
        try:
            await self._loop(stop, sub, rules_seq)
        finally:
            await sub.unsubscribe()

    async def _loop(self, stop: asyncio.Event, sub: Any, rules_seq: Callable[[], int]) -> None:
        next_tick = 0.0
        beat_seq, next_beat = -1, 0.0
        while not stop.is_set():
            try:
                msgs = await sub.fetch(256, timeout=min(self.tick_s, 0.2))
            except (NatsTimeoutError, TimeoutError):
                msgs = []
            except Exception as exc:  # NATS away: wait for the reconnect
                self.log.warning("fetch_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            now = time.time()
            while not self.resolved_by_operator.empty():
                self.evaluator.operator_resolved(*self.resolved_by_operator.get_nowait(), now=now)
            emitted, last = self._evaluate(msgs, now)
            if now >= next_tick:
                emitted.extend(self.evaluator.tick(now))
                next_tick = now + self.tick_s
            if msgs or emitted or self.evaluator.changed:
                await self._commit(emitted, last)
            for msg in msgs:
                await msg.ack()
            current = rules_seq()
            if current != beat_seq or now >= next_beat:
                await self.heartbeat(current)
                beat_seq, next_beat = current, now + 5.0
