"""`telemetry replay <projection>|all` while the service runs: build a shadow, catch up, swap atomically.

1. **Build.** Empty shadow tables (``shadow_tables.py``) are filled by the projection's own ``apply``, its SQL
   rewritten to name them, from an ephemeral consumer on the projection's stream and subjects from sequence 1,
   one transaction per fetched batch. The live model keeps answering and the projection worker keeps
   applying new messages to it meanwhile.
2. **Catch up.** Once the consumer has nothing pending, one transaction locks the projection's checkpoint row
   (the live runner takes the same row ``FOR UPDATE`` first in each of its transactions, so it waits here,
   holding nothing) and reads its position C. Messages up to C that the shadow has not applied yet are fetched
   and applied inside that transaction.
3. **Swap.** Still in it: the live tables are locked, dropped, and the shadows moved into their place under
   the same names; the checkpoint becomes max(C, last applied). Commit. Readers waited for a moment and never
   saw a partial model; the live runner continues after the checkpoint, on the new tables.

A projection stopped because its stream changed under its checkpoint (``stream_guard.py``) is reset the old
way instead (``replay.py``): its checkpoint is no position in the stream there is, so there is nothing to
catch up with; the projection worker rebuilds it by itself.

The replay horizon is the stream's: NOTICES (latest values, rollups, statistics) keeps
``TELEMETRY_POINTS_MAX_AGE`` (7 days), the DLQ 30 days, EVENTS everything. A stream that no longer starts at
sequence 1 would rebuild a model missing its oldest history, so that replay is refused unless
``--allow-partial``.
"""

import asyncio
import contextlib
import os
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec
import psycopg
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import AsyncConnection

from projection_worker import replay as offline
from projection_worker.main import PROJECTIONS
from projection_worker.platform_events import PRINCIPAL_COLUMNS
from projection_worker.runner import Projection
from projection_worker.shadow_tables import RewritingCursor, create_shadows, drop_shadow_functions, rewriter, swap_in
from telemetry_core.checkpoints import advance_checkpoint, read_checkpoint, read_position
from telemetry_core.errors import ConfigurationError
from telemetry_core.nats_conn import connect
from telemetry_core.settings import Settings
from telemetry_schemas.integration import ANONYMOUS

FETCH = 1000
FETCH_TIMEOUT_S = 1.0
PROGRESS_EVERY_S = 2.0


@dataclass
class ReplayResult:
    """What one replay did."""

    projection: str
    applied: int = 0  # messages applied to the shadow
    skipped: int = 0  # undecodable (the live worker dead-lettered them)
    checkpoint: int = 0  # the checkpoint the new tables took over at
    seconds: float = 0.0
    reset_instead: str | None = None  # set when the projection was halted and reset the old way

    def summary(self) -> str:
        """One line for the terminal."""
        if self.reset_instead:
            return self.reset_instead
        rate = self.applied / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replay {self.projection}: rebuilt from {self.applied} message(s) ({self.skipped} undecodable skipped) "
            f"in {self.seconds:.2f} s ({rate:,.0f} msg/s); swapped in at checkpoint {self.checkpoint}"
        )


class Progress:
    """Periodic progress lines on stderr (a bar when it is a terminal)."""

    def __init__(self, name: str, total: int, out: TextIO | None) -> None:
        """``out`` None prints nothing."""
        self._name, self._total, self._out = name, max(total, 1), out
        self._started = self._last = time.monotonic()

    def update(self, done: int, *, final: bool = False) -> None:
        """Print when due."""
        now = time.monotonic()
        if self._out is None or (not final and now - self._last < PROGRESS_EVERY_S):
            return
        self._last = now
        share = min(1.0, done / self._total)
        rate = done / max(now - self._started, 1e-9)
        bar = "#" * int(share * 30)
        end = "\n" if final or not self._out.isatty() else "\r"
        self._out.write(f"replay {self._name}: [{bar:<30}] {done}/{self._total} ({share:.0%}) {rate:,.0f} msg/s{end}")
        self._out.flush()


async def ephemeral_consumer(js: JetStreamContext, projection: Projection) -> tuple[Any, str, int]:
    """An ephemeral consumer on the projection's subjects from sequence 1; (subscription, name, pending)."""
    spec = projection.SPEC
    name = f"replay_{projection.NAME}_{secrets.token_hex(4)}"
    config = ConsumerConfig(
        name=name,
        filter_subject=None if spec.filter_subjects else spec.filter_subject,
        filter_subjects=list(spec.filter_subjects) or None,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=120.0,  # a replay that dies leaves nothing behind for long
        mem_storage=True,
    )
    info = await js.add_consumer(spec.stream, config)
    sub = await js.pull_subscribe_bind(consumer=name, stream=spec.stream)
    return sub, name, int(info.num_pending or 0)


class Rebuild:
    """One projection's shadow, fed batch by batch."""

    def __init__(self, conn: AsyncConnection, projection: Projection, sub: Any, rewrite: Any) -> None:
        """``conn`` is the replay's own connection (not autocommit)."""
        self.conn, self.projection, self.sub, self.rewrite = conn, projection, sub, rewrite
        self.applied = self.skipped = self.last_seq = 0
        self.drained = False  # the consumer had nothing more pending at the last fetch

    async def step(self) -> None:
        """Fetch one batch and apply it to the shadow in the caller's transaction."""
        try:
            msgs = await self.sub.fetch(FETCH, timeout=FETCH_TIMEOUT_S)
        except TimeoutError:
            self.drained = True
            return
        decoded = []
        for msg in msgs:
            try:
                decoded.append(self.projection.decode(msg.data))
            except msgspec.DecodeError:
                self.skipped += 1
        if decoded:
            async with self.conn.cursor() as cur:
                await self.projection.apply(RewritingCursor(cur, self.rewrite), decoded)  # type: ignore[arg-type]
        self.applied += len(decoded)
        self.last_seq = msgs[-1].metadata.sequence.stream
        self.drained = msgs[-1].metadata.num_pending == 0


async def _halted(database_url: str, projection: Projection) -> bool:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return (await read_position(conn, projection.NAME, projection.SPEC.stream)).halted is not None


async def replay_online(settings: Settings, projection: Projection, *, out: TextIO | None = sys.stderr,
                        allow_partial: bool = False, js: JetStreamContext | None = None) -> ReplayResult:  # fmt: skip
    """Rebuild ``projection`` beside the live one and swap it in (see the module docstring)."""
    nats_url, database_url = settings.require_servers()
    result = ReplayResult(projection.NAME)
    if await _halted(database_url, projection):
        result.reset_instead = await offline.replay(settings, projection.NAME)
        return result
    nc = None
    if js is None:
        nc = await connect(nats_url, "telemetry-replay", structlog.get_logger(), max_wait_s=5)
        js = nc.jetstream()
    started = time.monotonic()
    spec = projection.SPEC
    try:
        stream = await js.stream_info(spec.stream)
        if stream.state.first_seq > 1 and stream.state.messages and not allow_partial:
            raise ConfigurationError(
                f"stream {spec.stream} no longer starts at sequence 1 (first is {stream.state.first_seq}: older "
                f"messages passed its max age), so a rebuild of {projection.NAME} would lose that history; "
                "pass --allow-partial to rebuild from what is left"
            )
        sub, consumer, pending = await ephemeral_consumer(js, projection)
        progress = Progress(projection.NAME, pending, out)
        try:
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                async with conn.transaction():
                    pattern = await create_shadows(conn, projection.TABLES)
                    # The swap locks the checkpoint row first; it must exist before then, or a live transaction
                    # that found none would insert it after writing its tables, and the two would deadlock.
                    await advance_checkpoint(conn, projection.NAME, spec.stream, 0)
                rebuild = Rebuild(conn, projection, sub, rewriter(pattern))
                rebuild.drained = pending == 0  # nothing to fetch: no idle wait for a batch that never comes
                # Build: one transaction per batch, the live model untouched, until the shadow has reached the
                # stream's end or the live model's checkpoint (under sustained ingest the end keeps moving).
                while not rebuild.drained:
                    async with conn.transaction():
                        await rebuild.step()
                        live = await read_checkpoint(conn, projection.NAME, spec.stream)
                    progress.update(rebuild.applied + rebuild.skipped)
                    if rebuild.last_seq >= live > 0:
                        break
                async with conn.transaction():  # catch up under the checkpoint's lock, then swap
                    live = await read_checkpoint(conn, projection.NAME, spec.stream, for_update=True)
                    rebuild.drained = False
                    while rebuild.last_seq < live and not rebuild.drained:
                        await rebuild.step()
                    await swap_in(conn, projection.TABLES, PRINCIPAL_COLUMNS, ANONYMOUS)
                    result.checkpoint = max(live, rebuild.last_seq)
                    await advance_checkpoint(conn, projection.NAME, spec.stream, result.checkpoint)
                    await drop_shadow_functions(conn)
                progress.update(rebuild.applied + rebuild.skipped, final=True)
                result.applied, result.skipped = rebuild.applied, rebuild.skipped
        finally:
            with contextlib.suppress(Exception):  # the inactive threshold removes the consumer anyway
                await sub.unsubscribe()
                await js.delete_consumer(spec.stream, consumer)
    finally:
        if nc is not None:
            await nc.close()
    result.seconds = time.monotonic() - started
    return result


def by_name(name: str) -> list[Projection]:
    """The projections ``name`` means (``all``: every one, in the worker's order)."""
    if name == "all":
        return list(PROJECTIONS)
    found = [p for p in PROJECTIONS if name == p.NAME]
    if not found:
        names = ", ".join(sorted(p.NAME for p in PROJECTIONS))
        raise ConfigurationError(f"unknown projection {name!r}; choose from {names}, all, points")
    return found


async def replay_many(settings: Settings, name: str, allow_partial: bool) -> list[ReplayResult]:
    """Replay one projection or all, one after the other, printing each summary."""
    results = []
    for projection in by_name(name):
        result = await replay_online(settings, projection, allow_partial=allow_partial)
        print(result.summary(), flush=True)
        results.append(result)
    return results


def main(name: str, allow_partial: bool = False) -> None:
    """Entry point."""
    results = asyncio.run(replay_many(Settings.from_env(os.environ), name, allow_partial))
    if len(results) > 1:
        total = sum(r.applied for r in results)
        print(f"replayed {len(results)} projections, {total} message(s) in {sum(r.seconds for r in results):.2f} s")
