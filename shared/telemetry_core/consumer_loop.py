"""The durable pull loop: fetch → handler → ack | nak(delay) | term + dead letter.

The handler processes a whole fetched batch (one database transaction for throughput) and
returns the messages it rejected; the loop decides ack, nak or term from what happened, in
one place.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from telemetry_core.dead_letter import publish_dead_letter
from telemetry_core.errors import PermanentError
from telemetry_core.topology import ConsumerSpec


@dataclass(frozen=True)
class Rejected:
    """A message the handler will never be able to apply, and why."""

    msg: Msg
    reason: str


# A batch that fails this many deliveries is retried one message at a time.
_ISOLATE_AFTER = 2

Handler = Callable[[list[Msg]], Awaitable[list[Rejected]]]


@dataclass
class LoopStats:
    """Counters for logs and /health/detailed."""

    batches: int = 0
    messages: int = 0
    dead_lettered: int = 0
    retried: int = 0


async def _dead_letter(
    js: JetStreamContext, worker: str, msg: Msg, reason: str, log: structlog.stdlib.BoundLogger
) -> None:
    await publish_dead_letter(js, worker, msg, reason)
    await msg.term()
    log.warning("dead_lettered", subject=msg.subject, reason=reason)


async def _handle(
    js: JetStreamContext,
    worker: str,
    handler: Handler,
    msgs: list[Msg],
    max_deliveries: int,
    log: structlog.stdlib.BoundLogger,
    stats: LoopStats,
) -> None:
    try:
        rejected = await handler(msgs)
    except PermanentError as exc:
        if len(msgs) > 1:
            # Isolate the poison message: retry one at a time so good messages still land.
            for msg in msgs:
                await _handle(js, worker, handler, [msg], max_deliveries, log, stats)
            return
        stats.dead_lettered += 1
        await _dead_letter(js, worker, msgs[0], str(exc), log)
        return
    except Exception as exc:  # anything else is retried, then dead-lettered
        if len(msgs) > 1 and max(m.metadata.num_delivered or 1 for m in msgs) >= _ISOLATE_AFTER:
            # Failed before as a batch: one message may be poison. Go one at a time so the rest land.
            log.warning("batch_failed_again_isolating", error=repr(exc), messages=len(msgs))
            for msg in msgs:
                await _handle(js, worker, handler, [msg], max_deliveries, log, stats)
            return
        stats.retried += len(msgs)
        log.warning("batch_failed_will_retry", error=repr(exc), messages=len(msgs), exc_info=True)
        for msg in msgs:
            delivered = msg.metadata.num_delivered or 1
            if delivered >= max_deliveries:
                stats.dead_lettered += 1
                await _dead_letter(js, worker, msg, f"failed {delivered} deliveries; last error: {exc!r}", log)
            else:
                await msg.nak(delay=min(0.5 * 2**delivered, 30.0))
        return
    rejected_ids = {id(r.msg) for r in rejected}
    for r in rejected:
        stats.dead_lettered += 1
        await _dead_letter(js, worker, r.msg, r.reason, log)
    for msg in msgs:
        if id(msg) not in rejected_ids:
            await msg.ack()
    stats.batches += 1
    stats.messages += len(msgs)


async def run(
    js: JetStreamContext,
    spec: ConsumerSpec,
    worker: str,
    handler: Handler,
    stop: asyncio.Event,
    *,
    batch: int,
    max_deliveries: int,
    log: structlog.stdlib.BoundLogger,
    stats: LoopStats | None = None,
) -> None:
    """Consume until ``stop`` is set; the batch in hand is finished before returning."""
    stats = stats or LoopStats()
    sub = await js.pull_subscribe_bind(spec.durable, spec.stream)
    log.info("consuming", stream=spec.stream, durable=spec.durable)
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning("fetch_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            await _handle(js, worker, handler, msgs, max_deliveries, log, stats)
    finally:
        await sub.unsubscribe()
