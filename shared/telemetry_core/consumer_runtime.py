"""The one consumer runtime: fetch → handler → ack | retry | dead letter, decided here and nowhere else.

A handler processes a fetched batch (one transaction, for throughput) and returns what it rejects
(``Rejected``, whole messages or some of their points). It raises ``PermanentError`` when a message can
never be applied, and ``TransientError`` — or lets a NATS / PostgreSQL connection error through — when
a server is away (``errors.is_transient``). From that, the runtime decides:

* success: dead-letter the rejects with their reason, ack everything else;
* transient failure: retry the same batch in place with back-off, telling JetStream the messages are in
  progress; never dead-letter (PostgreSQL being down for an hour loses nothing);
* ``PermanentError``: a batch goes one message at a time (so the good ones land), the culprit is
  dead-lettered at once;
* redelivered messages (after a failure, a stop, or a process that died mid-batch; for an ordered consumer
  also those a predecessor held when it died, delivered again first by ``consumer_reset``) are handled one at a
  time, each named in the crash journal (``crash_journal.py``) while it is handled: a message the process
  died on ``Policy.crash_limit`` times, alone, is dead-lettered instead of handled again, so a message that
  kills the worker cannot stop the consumer for ever (its delivery count cannot tell: the messages fetched
  with it or behind it are redelivered as often);
* any other failure —
  unordered: nak with a growing delay; a batch failing again goes one message at a time; a message
  failing ``max_deliveries`` deliveries is dead-lettered with the last error;
  ordered: retry the same batch in place ``attempts`` times, then each message alone, in order, and
  dead-letter one that still fails before moving on. A newer message never commits while an older
  one waits for redelivery: projections keep a high-water-mark checkpoint, which would make the older
  one look applied and skip it (silent loss).

A consumer with a checkpoint passes a ``StreamGuard``: it is checked before the first fetch, after a NATS
reconnect or a failed fetch, and every ``recheck_s``; a handler may raise ``StreamChanged`` before it skips
messages. Either way the batch in hand is released (nak), the halt is recorded, and ``run`` raises
``StreamChanged``: a checkpoint that is no longer a position in its stream would skip new messages silently.

Every wait ends on the stop signal. A handler still running then gets ``grace_s`` to finish and is
cancelled; messages not yet settled are nak'ed for prompt redelivery (after a crash, without that nak,
JetStream redelivers them once ``ack_wait`` passes).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from telemetry_core.consumer_reset import restart_at_ack_floor
from telemetry_core.crash_journal import CrashJournal
from telemetry_core.dead_letter import publish_dead_letter
from telemetry_core.errors import PermanentError, is_transient
from telemetry_core.headers import REQUEST_ID
from telemetry_core.metrics import BATCH_SECONDS, CONSUMER_MESSAGES, DEAD_LETTERS
from telemetry_core.stopping import Stopped, bounded, sleep_or_stop, until_stopped
from telemetry_core.stream_guard import StreamChanged, StreamGuard
from telemetry_core.topology import ConsumerSpec


def request_ids(msgs: list[Msg]) -> list[str]:
    """The distinct X-Request-Id headers of ``msgs``, in order (messages without one are skipped)."""
    seen: dict[str, None] = {}
    for msg in msgs:
        headers = msg.headers
        if headers:
            rid = headers.get(REQUEST_ID)
            if rid:  # a message of several requests (StoredNotices) carries their ids comma-separated
                seen.update(dict.fromkeys(rid.split(",")))
    return list(seen)


def _lingers(msgs: list[Msg], policy: "Policy") -> bool:
    """Whether a fetch that returned ``msgs`` waits ``policy.linger_s`` for more (Policy's linger fields)."""
    if policy.linger_s <= 0 or not policy.linger_min <= len(msgs) < policy.batch:
        return False
    limit = policy.linger_max_bytes
    return not limit or sum(len(m.data) for m in msgs) < limit


@dataclass(frozen=True)
class Rejected:
    """A message — or some of its points — the handler will never be able to apply, and why."""

    msg: Msg
    reason: str
    # What to dead-letter instead of the whole message (e.g. only its invalid points).
    payload: bytes | None = None
    # The rest of the message was applied: ack it once the rejected part is dead-lettered (else: term).
    rest_applied: bool = False


Handler = Callable[[list[Msg]], Awaitable[list[Rejected]]]
Tick = Callable[[], Awaitable[None]]


# How long the fetch after a linger may wait when nothing arrived meanwhile (it asks with no_wait first).
_LINGER_FETCH_S = 0.02


@dataclass(frozen=True)
class Policy:
    """How a runtime fetches and retries."""

    batch: int = 64
    max_deliveries: int = 10
    # Keep stream order: retry in place, isolate, dead-letter, and only then move on (see module doc).
    ordered: bool = False
    # Ordered: failures of a batch, then of a single message, before isolating / dead-lettering (~3 s).
    attempts: int = 5
    # Unordered: deliveries of a failing batch before it is retried one message at a time.
    isolate_after: int = 2
    retry_base_s: float = 0.2
    retry_max_s: float = 5.0
    nak_base_s: float = 0.5
    nak_max_s: float = 30.0
    fetch_timeout_s: float = 0.5
    # After a fetch that returned fewer than ``batch`` messages, wait this long and take what arrived meanwhile:
    # fewer, larger batches (a transaction each) for consumers whose readers can wait that long. 0: no wait.
    linger_s: float = 0.0
    # ... but only after a fetch of at least this many messages: a lone message (a trickle: nobody else is writing)
    # is handled at once; several in one fetch (concurrent writers) say more are coming, worth the wait.
    linger_min: int = 1
    # ... and only while the fetched messages hold fewer bytes than this (0: any size): big messages already make
    # big transactions, and waiting for more of them only adds to a backlog.
    linger_max_bytes: int = 0
    # On stop, how long a handler already running may take to finish before it is cancelled.
    grace_s: float = 1.0

    # Deaths of the process while it handled one message alone (telemetry_core/crash_journal.py) before that
    # message is dead-lettered instead of handled again.
    crash_limit: int = 3

    def retry_delay(self, failures: int) -> float:
        """Back-off before in-place retry number ``failures`` (1-based)."""
        return float(min(self.retry_base_s * 2 ** (failures - 1), self.retry_max_s))

    def nak_delay(self, delivered: int) -> float:
        """Redelivery delay of a message that failed its ``delivered``-th delivery."""
        return float(min(self.nak_base_s * 2**delivered, self.nak_max_s))


def _delivered(msg: Msg) -> int:
    return int(msg.metadata.num_delivered or 1)


class ConsumerRuntime:
    """Consumes one durable pull consumer with one handler until ``stop`` is set."""

    def __init__(self, js: JetStreamContext, spec: ConsumerSpec, worker: str, handler: Handler,
                 stop: asyncio.Event, log: structlog.stdlib.BoundLogger, policy: Policy | None = None, *,
                 tick: Tick | None = None, tick_s: float = 1.0, guard: StreamGuard | None = None) -> None:  # fmt: skip
        """``worker`` names the dead-letter subject (telemetry.dlq.<worker>); ``tick`` runs every ``tick_s``.

        ``guard`` checks the consumer's checkpoint against its stream (see the module doc).
        """
        self._guard = guard
        self._js, self._spec, self._worker, self._handler = js, spec, worker, handler
        self._stop, self._log, self._policy = stop, log, policy or Policy()
        self._tick, self._tick_s = tick, tick_s
        self._unsettled: dict[int, Msg] = {}
        durable = spec.durable
        self._settled = {how: CONSUMER_MESSAGES.labels(durable, how) for how in ("ack", "term", "nak")}
        self._dead_letters = DEAD_LETTERS.labels(durable)
        self._journal = CrashJournal(js, durable, log)
        self._batch_seconds = BATCH_SECONDS.labels(durable)
        # Ordered: messages up to this stream sequence were in flight in a predecessor (consumer_reset.py).
        self._in_flight_to = 0

    async def run(self) -> None:
        """Fetch and handle until stopped; the batch in hand is settled or released before returning.

        Raises StreamChanged when the guard finds the checkpoint is no longer a position in the stream.
        """
        await self._check_stream()
        if self._policy.ordered:
            await self._restart_at_ack_floor()
        sub = await self._js.pull_subscribe_bind(self._spec.durable, self._spec.stream)
        self._log.info("consuming", stream=self._spec.stream, durable=self._spec.durable)
        next_tick, tick_failures = 0.0, 0
        try:
            while not self._stop.is_set():
                timeout = self._policy.fetch_timeout_s
                if self._tick is not None:
                    timeout = max(0.01, min(timeout, next_tick - time.monotonic()))
                if self._guard is not None and self._guard.due():
                    await self._check_stream()
                msgs = await self._fetch(sub, timeout)
                if msgs and _lingers(msgs, self._policy):
                    msgs += await self._linger(sub, self._policy.batch - len(msgs))
                if msgs and not await self._process(msgs):
                    break
                if self._tick is not None and time.monotonic() >= next_tick and not self._stop.is_set():
                    tick_failures = 0 if await self._run_tick(self._tick) else tick_failures + 1
                    # A failing tick (its database away) backs off like a failing batch.
                    pause = self._tick_s
                    if tick_failures:
                        pause = max(pause, self._policy.retry_delay(tick_failures))
                    next_tick = time.monotonic() + pause
        finally:
            await bounded(sub.unsubscribe, 0.5, "unsubscribe", self._log)

    async def _linger(self, sub: Any, room: int) -> list[Msg]:
        """Up to ``room`` more messages, those that arrived within ``linger_s``; none when stopping meanwhile.

        The messages in hand are not settled yet: the wait counts against ack_wait (keep linger_s far below it).
        """
        if await sleep_or_stop(self._stop, self._policy.linger_s):
            return []
        return await self._fetch(sub, _LINGER_FETCH_S, room)

    async def _fetch(self, sub: Any, wait_s: float, at_most: int | None = None) -> list[Msg]:
        try:
            return list(await sub.fetch(at_most or self._policy.batch, timeout=wait_s))
        except (NatsTimeoutError, TimeoutError):
            return []
        except Exception as exc:  # NATS away: its client reconnects; try again shortly
            self._log.warning("fetch_failed", error=repr(exc))
            if self._guard is not None:
                self._guard.suspect()  # the stream (and its consumer) may have been deleted and created again
            await sleep_or_stop(self._stop, 0.5)
            return []

    async def _process(self, msgs: list[Msg]) -> bool:
        """Handle one fetched batch; False when the stop signal interrupted it (unsettled messages are nak'ed)."""
        self._unsettled = {id(m): m for m in msgs}
        try:
            held = self._in_flight_to  # 0 unless a predecessor died holding messages (consumer_reset.py)
            if any(_delivered(m) > 1 or m.metadata.sequence.stream <= held for m in msgs):
                await self._one_at_a_time(msgs)
            elif self._policy.ordered:
                await self._ordered(msgs)
            else:
                await self._unordered(msgs)
            return True
        except StreamChanged as exc:
            released = list(self._unsettled.values())
            for msg in released:
                await self._settle_one(msg, "nak")
            if self._guard is not None:
                await self._guard.halt(exc)
            raise
        except Stopped:
            released = list(self._unsettled.values())
            for msg in released:
                await self._settle_one(msg, "nak")
            self._log.info("stopped_mid_batch", released=len(released))
            return False

    async def _restart_at_ack_floor(self) -> None:
        """Ordered: have a dead predecessor's messages delivered again first (consumer_reset.py); retried until stop.

        Fetching before it succeeded could commit newer messages first: a checkpoint would then skip the older ones.
        """
        failures = 0
        while not self._stop.is_set():
            try:
                self._in_flight_to = await restart_at_ack_floor(self._js, self._spec, self._log)
                return
            except Exception as exc:  # NATS away, or a cluster without a consumer leader for a moment
                failures += 1
                delay = self._policy.retry_delay(failures)
                self._log.warning("consumer_reset_failed_retrying", error=repr(exc), attempt=failures, retry_in_s=delay)
                await sleep_or_stop(self._stop, delay)

    async def _check_stream(self) -> None:
        """Run the guard's check, retrying while NATS or PostgreSQL is away (until stop); StreamChanged goes up."""
        failures = 0
        while self._guard is not None and not self._stop.is_set():
            try:
                await until_stopped(self._stop, self._guard.check(), grace_s=self._policy.grace_s)
                return
            except StreamChanged:
                raise
            except Stopped:
                return  # the caller sees the stop signal
            except Exception as exc:
                failures += 1
                self._log.warning("stream_check_failed_will_retry", error=repr(exc), attempt=failures)
                if await sleep_or_stop(self._stop, self._policy.retry_delay(failures)):
                    return

    async def _run_tick(self, tick: Tick) -> bool:
        try:
            await until_stopped(self._stop, tick(), grace_s=self._policy.grace_s)
        except Stopped:
            return True
        except Exception as exc:
            self._log.warning("tick_failed", error=repr(exc), exc_info=None if is_transient(exc) else exc)
            return False
        return True

    # -- calling the handler -------------------------------------------------------------------------

    async def _keep_in_progress(self, msgs: list[Msg]) -> None:
        while True:
            await asyncio.sleep(self._spec.ack_wait_s / 3)
            await self._in_progress(msgs)

    async def _handle(self, msgs: list[Msg]) -> list[Rejected]:
        # A slow handler (a big batch, a slow database) must not let ack_wait expire: that would hand the
        # same messages to another consumer while this one still works on them.
        ticker = asyncio.create_task(self._keep_in_progress(msgs))
        # The request ids the messages carry (X-Request-Id, set by the gateway) go on every log line the
        # handler writes, and on one line per handled batch: one grep follows a request across processes.
        ids = request_ids(msgs)
        tokens = structlog.contextvars.bind_contextvars(request_ids=ids) if ids else {}
        start = time.perf_counter()
        try:
            rejected = await self._handler(msgs)
            if ids:
                self._log.info("batch_handled", consumer=self._spec.durable, messages=len(msgs), rejected=len(rejected))
            return rejected
        finally:
            self._batch_seconds.observe(time.perf_counter() - start)
            ticker.cancel()
            if tokens:
                structlog.contextvars.reset_contextvars(**tokens)

    async def _attempt(self, msgs: list[Msg]) -> list[Rejected] | Exception:
        """The handler's rejects, or its non-transient failure; transient failures are retried here."""
        failures = 0
        while True:
            try:
                return await until_stopped(self._stop, self._handle(msgs), grace_s=self._policy.grace_s)
            except (Stopped, StreamChanged):
                raise
            except Exception as exc:
                if not is_transient(exc):
                    return exc
                failures += 1
                delay = self._policy.retry_delay(failures)
                self._log.warning("transient_failure_will_retry", error=repr(exc), attempt=failures,
                                  messages=len(msgs), retry_in_s=delay)  # fmt: skip
                await self._in_progress(msgs)
                if await sleep_or_stop(self._stop, delay):
                    raise Stopped from exc

    async def _one_at_a_time(self, msgs: list[Msg]) -> None:
        """Redelivered messages, each alone and in order, each named in the crash journal while it is handled.

        A redelivery follows a failure, a stop, or a process that died mid-batch. Alone, the message that kills
        the worker is the one the journal names when the process comes back; after ``crash_limit`` such deaths it
        is dead-lettered, and the messages behind it (whose delivery counts grew with it) are handled.
        """
        handle = self._ordered if self._policy.ordered else self._unordered
        try:
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                died = await self._journal.begin(seq)
                if died >= self._policy.crash_limit:
                    await self._dead_letter(
                        msg,
                        f"the worker died {died} times while handling this message alone (delivery "
                        f"{_delivered(msg)}); dead-lettered instead of handled again",
                    )  # fmt: skip
                    continue
                await handle([msg])
        except asyncio.CancelledError:
            raise  # torn down mid-message, as by a crash: the entry stays and counts against the message
        except BaseException:
            await self._journal.end()  # a clean stop (Stopped) or a halt: no death to count
            raise
        await self._journal.end()

    # -- the two retry disciplines ---------------------------------------------------------------------

    async def _ordered(self, msgs: list[Msg]) -> None:
        failures = 0
        while True:
            outcome = await self._attempt(msgs)
            if not isinstance(outcome, Exception):
                await self._settle(msgs, outcome)
                return
            failures += 1
            delivered = max(_delivered(m) for m in msgs)
            exhausted = failures >= self._policy.attempts or delivered >= self._policy.max_deliveries
            if isinstance(outcome, PermanentError) or exhausted:
                if len(msgs) > 1:
                    self._log.warning("batch_failed_isolating", error=repr(outcome), messages=len(msgs))
                    for msg in msgs:
                        await self._ordered([msg])
                    return
                reason = str(outcome) if isinstance(outcome, PermanentError) else (
                    f"failed {failures} attempts (delivery {delivered}); last error: {outcome!r}"
                )  # fmt: skip
                await self._dead_letter(msgs[0], reason)
                return
            delay = self._policy.retry_delay(failures)
            self._log.warning("batch_failed_will_retry_in_order", error=repr(outcome), attempt=failures,
                              messages=len(msgs), retry_in_s=delay, exc_info=outcome)  # fmt: skip
            await self._in_progress(msgs)
            if await sleep_or_stop(self._stop, delay):
                raise Stopped

    async def _unordered(self, msgs: list[Msg]) -> None:
        outcome = await self._attempt(msgs)
        if not isinstance(outcome, Exception):
            await self._settle(msgs, outcome)
            return
        delivered = max(_delivered(m) for m in msgs)
        if len(msgs) > 1 and (isinstance(outcome, PermanentError) or delivered >= self._policy.isolate_after):
            # One message may be poison: go one at a time so the rest land.
            self._log.warning("batch_failed_isolating", error=repr(outcome), messages=len(msgs))
            for msg in msgs:
                await self._unordered([msg])
            return
        if isinstance(outcome, PermanentError):
            await self._dead_letter(msgs[0], str(outcome))
            return
        self._log.warning("batch_failed_will_retry", error=repr(outcome), messages=len(msgs), exc_info=outcome)
        for msg in msgs:
            delivered = _delivered(msg)
            if delivered >= self._policy.max_deliveries:
                await self._dead_letter(msg, f"failed {delivered} deliveries; last error: {outcome!r}")
            else:
                await self._settle_one(msg, "nak", delay=self._policy.nak_delay(delivered))

    # -- settling --------------------------------------------------------------------------------------

    async def _settle(self, msgs: list[Msg], rejected: list[Rejected]) -> None:
        rejected_ids = {id(r.msg) for r in rejected}
        for r in rejected:
            await self._dead_letter(r.msg, r.reason, r.payload, ack=r.rest_applied)
        for msg in msgs:
            if id(msg) not in rejected_ids:
                await self._settle_one(msg, "ack")

    async def _dead_letter(self, msg: Msg, reason: str, payload: bytes | None = None, *, ack: bool = False) -> None:
        """Publish the dead letter (retrying until NATS takes it, or stop), then term — or ack — the message."""
        failures = 0
        while True:
            try:
                published = publish_dead_letter(self._js, self._worker, msg, reason, payload)
                await until_stopped(self._stop, published, grace_s=self._policy.grace_s)
                break
            except Stopped:
                raise
            except Exception as exc:
                failures += 1
                self._log.warning("dead_letter_failed_will_retry", error=repr(exc), attempt=failures)
                await self._in_progress([msg])
                if await sleep_or_stop(self._stop, self._policy.retry_delay(failures)):
                    raise Stopped from exc
        await self._settle_one(msg, "ack" if ack else "term")
        self._dead_letters.inc()
        self._log.warning("dead_lettered", subject=msg.subject, reason=reason[:500], whole_message=not ack)

    async def _settle_one(self, msg: Msg, how: str, delay: float | None = None) -> None:
        self._unsettled.pop(id(msg), None)
        self._settled[how].inc()
        try:
            if how == "ack":
                await msg.ack()
            elif how == "term":
                await msg.term()
            else:
                await msg.nak(delay=delay)
        except Exception as exc:  # connection gone: JetStream redelivers after ack_wait, handlers are idempotent
            self._log.warning("settle_failed", how=how, error=repr(exc))

    async def _in_progress(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            with contextlib.suppress(Exception):
                await msg.in_progress()
