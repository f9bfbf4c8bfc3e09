"""The engine of one device partition: points and ticks in, transitions out, state checkpointed.

It runs on the consumer runtime (``ordered=True``) as a handler plus a tick hook. Per fetched batch it
evaluates → publishes transitions (awaiting PubAcks) → saves changed machines and the POINTS position
in one transaction (a batch that changed nothing saves its position at most every CHECKPOINT_EVERY_S);
the runtime then acks. Only signed (admitted) messages are evaluated, so an
unreadable message is skipped here and dead-lettered once, by the ingest worker. A crash anywhere
before the ack replays the same inputs against the last saved state, which yields the same transitions
with the same ids; JetStream drops the duplicates. If the save fails (PostgreSQL or NATS away), the
runtime retries the same batch: ``checkpoint`` already says it was evaluated, so only the unsaved
transitions and machines are published and saved again — points are never evaluated twice. The
runtime calls the handler and the tick one at a time, so machines are never touched concurrently.
"""

import asyncio
import time
from collections.abc import Callable, Container

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from alert_worker import state_store
from alert_worker.emitter import Emitted, Emitter
from alert_worker.evaluator import Evaluator, owns
from alert_worker.rules import RuleBook
from telemetry_core.consumer_runtime import Rejected
from telemetry_core.metrics import ALERT_EVALUATIONS, ALERT_RULES_WAITING, ALERT_UNWATCHED
from telemetry_core.points_validator import PointsValidator
from telemetry_core.stream_guard import StreamGuard
from telemetry_core.topology import POINTS_STREAM, ConsumerSpec, device_of_points_subject
from telemetry_schemas.values import Point

# How often the runtime calls the tick hook: operator resolutions and rule changes (gateways wait on the
# heartbeat) are picked up this fast; the evaluator's own clock tick runs every ``tick_s``.
HOOK_S = 0.2
# Messages evaluated between two yields to the event loop (rule events, RULES_APPLIED requests).
YIELD_EVERY = 16
# A batch that changed no machine's essentials and emitted nothing saves its POINTS position at most this often
# (a PostgreSQL commit, with its WAL flush, per batch was ~20 % of the engine's CPU under a single-point load).
# Skipping it loses nothing: the runtime acks the batch either way, so after a crash the consumer resumes past
# it (consumer_reset.py: at its ack floor) whatever the saved position; what those points changed (bookkeeping
# such as newest_event) is saved with the next essential change, as it always was.
CHECKPOINT_EVERY_S = 1.0


def _points(msg: Msg, validator: PointsValidator, watched: Container[str]) -> tuple[int, list[Point]]:
    """(points in the message, the points to evaluate) of a POINTS message that the ingest worker stores too.

    Only signed (admitted) messages count: a directly published message counts once the ingest worker has
    admitted it and re-published its good points signed; its unsigned original is never evaluated, and an
    unreadable one is the ingest worker's to dead-letter (points_validator explains why one verdict serves
    every consumer). A message none of whose metrics a rule watches is only skimmed (its metric names): the
    evaluator would skip each of its points anyway, and the full read was half of the engine's CPU per point.
    """
    names = validator.metric_names(msg)
    if names is None:
        return 0, []
    if not any(name in watched for name in names):
        return len(names), []
    accepted = validator.accepted(msg, signature_checked=True)
    return (0, []) if accepted is None else (len(accepted.points), accepted.points)


class Engine:
    """Evaluates one partition's points; ``handle`` and ``tick`` are its consumer-runtime hooks."""

    def __init__(self, js: JetStreamContext, pool: AsyncConnectionPool, spec: ConsumerSpec, evaluator: Evaluator,
                 emitter: Emitter, *, partition: int, partitions: int, checkpoint: int, tick_s: float,
                 rules_seq: Callable[[], int], log: structlog.stdlib.BoundLogger,
                 validator: PointsValidator, guard: StreamGuard | None = None) -> None:  # fmt: skip
        self.js, self.pool, self.spec, self.evaluator, self.emitter = js, pool, spec, evaluator, emitter
        self.partition, self.partitions, self.checkpoint = partition, partitions, checkpoint
        self.tick_s, self.rules_seq, self.log, self.validator = tick_s, rules_seq, log, validator
        self.guard = guard
        self.name = spec.durable
        self.resolved_by_operator: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.points_evaluated = 0
        self.points_unwatched = 0  # of points_evaluated: passed over unread (no rule watches their metrics)
        # Transitions evaluated but not yet published and saved (kept across a failed save).
        self._unsaved: list[Emitted] = []
        self._next_tick = 0.0
        self._beat_seq, self._next_beat = -1, 0.0
        self._saved_checkpoint, self._next_checkpoint = checkpoint, time.monotonic() + CHECKPOINT_EVERY_S

    async def _evaluate(self, msgs: list[Msg], now: float) -> tuple[list[Emitted], int]:
        out: list[Emitted] = []
        last = self.checkpoint
        book = self.evaluator.rules
        watched = self.evaluator.watched_metrics()
        for n, msg in enumerate(msgs, 1):
            if n % YIELD_EVERY == 0:
                # Let rule events and a gateway's "applied yet?" request in between (a batch can take long).
                await asyncio.sleep(0)
                watched = self.evaluator.watched_metrics()  # a change received meanwhile may apply at once
            seq = msg.metadata.sequence.stream
            if book.waiting and book.reach(seq - 1):  # changes made before this message govern it
                watched = self.evaluator.watched_metrics()
            last = max(last, seq)
            if seq <= self.checkpoint:
                continue  # already in the saved state: a redelivery after a lost ack
            # The consumer's filter delivers only this partition's slots; messages stored before POINTS had
            # slots arrive on every partition and are sorted out here.
            if not owns(msg.subject, self.partition, self.partitions):
                continue
            device_id = device_of_points_subject(msg.subject)
            seen, points = _points(msg, self.validator, watched)
            self.points_evaluated += seen
            ALERT_EVALUATIONS.inc(seen)
            if seen and not points:  # passed over unread: no rule watches its metrics
                self.points_unwatched += seen
                ALERT_UNWATCHED.inc(seen)
            if points:
                out.extend(self.evaluator.points(device_id, ((f"{seq}:{i}", p) for i, p in enumerate(points)), now))
        book.reach(last)
        return out, last

    async def apply_rules_when_idle(self) -> None:
        """Apply the waiting rule changes once this engine's consumer has nothing left up to them.

        A change waits until the engine has evaluated every POINTS message up to its ``points_seq`` (rules.py), and
        a partition that receives no new messages would never get there by evaluating: so, while a change waits,
        the tick asks the consumer. Nothing pending and nothing unacknowledged (the runtime acknowledges a batch
        only after ``handle``) means every message of this partition the stream held when asked has been evaluated;
        the stream held the changes' ``points_seq`` by then (the gateway read it before publishing the change).
        Says on /metrics how many changes still wait (telemetry_alert_rule_changes_waiting).
        """
        book = self.evaluator.rules
        try:
            if book.waiting:
                await self._apply_when_idle(book)
        finally:
            ALERT_RULES_WAITING.set(len(book.waiting))

    async def _apply_when_idle(self, book: RuleBook) -> None:
        until = book.waiting_until()
        if until <= book.position:
            return
        try:
            info = await self.js.consumer_info(self.spec.stream, self.spec.durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                book.reach(until)
                return
            # Busy: a change made on a POINTS stream since created again would wait for the new one to grow past
            # its sequence (RuleBook.release_beyond).
            stream = await self.js.stream_info(self.spec.stream)
        except Exception as exc:  # NATS busy or away: the next tick asks again; the rest of this tick goes on
            self.log.warning("rule_changes_waiting_info_failed", error=repr(exc), waiting=len(book.waiting))
            return
        if book.release_beyond(int(stream.state.last_seq or 0)):
            self.log.warning("rule_changes_from_an_earlier_stream_applied", stream=self.spec.stream,
                             last_seq=stream.state.last_seq)  # fmt: skip

    async def _commit(self) -> None:
        """Publish the unsaved transitions, then save changed machines and the checkpoint in one transaction."""
        if self._unsaved:
            await self.emitter.publish(self._unsaved)
        self.evaluator.settle(self.evaluator.changed)  # parked machines' bookkeeping, as a walk would leave it
        async with self.pool.connection() as conn:
            await state_store.save(
                conn, self.name, POINTS_STREAM, self.evaluator.machines, self.evaluator.changed, self.checkpoint
            )
        self.evaluator.changed.clear()
        self._unsaved.clear()
        self._saved_checkpoint, self._next_checkpoint = self.checkpoint, time.monotonic() + CHECKPOINT_EVERY_S

    def _must_save(self) -> bool:
        """Transitions or essential changes to save, or a position unsaved for CHECKPOINT_EVERY_S."""
        if self._unsaved or self.evaluator.changed:
            return True
        return self.checkpoint > self._saved_checkpoint and time.monotonic() >= self._next_checkpoint

    async def handle(self, msgs: list[Msg]) -> list[Rejected]:
        """Evaluate a fetched batch and save its effect."""
        if self.guard is not None and any(m.metadata.sequence.stream <= self.checkpoint for m in msgs):
            # A redelivery is skipped rightly; new points of a stream created again would be skipped silently.
            await self.guard.before_skip(self.checkpoint)
        emitted, last = await self._evaluate(msgs, time.time())
        self._unsaved.extend(emitted)
        self.checkpoint = last  # the machines in memory reflect these messages from now on
        if self._must_save():
            await self._commit()
        return []  # nothing to reject here: unreadable or unsigned messages are the ingest worker's verdict

    async def tick(self) -> None:
        """Apply operator resolutions, run the clock (auto-resolve, cooldowns, no-data), save, heartbeat."""
        await self.apply_rules_when_idle()
        now = time.time()
        while not self.resolved_by_operator.empty():
            self.evaluator.operator_resolved(*self.resolved_by_operator.get_nowait(), now=now)
        if now >= self._next_tick:
            self._unsaved.extend(self.evaluator.tick(now))
            self._next_tick = now + self.tick_s
        if self._must_save():  # also a quiet partition's last position, within CHECKPOINT_EVERY_S
            await self._commit()
        current = self.rules_seq()
        if current != self._beat_seq or now >= self._next_beat:
            await self.heartbeat(current)
            self._beat_seq, self._next_beat = current, now + 5.0

    async def heartbeat(self, rules_seq: int) -> None:
        """Record which rule events are applied (gateways wait on it) and that this copy is alive."""
        async with self.pool.connection() as conn:
            await state_store.heartbeat(conn, self.name, rules_seq, self.evaluator.late_points)
