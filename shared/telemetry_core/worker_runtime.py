"""Start-up and shutdown every worker process shares: a stop event wired to SIGTERM/SIGINT, NATS, the topology.

Stop means stop: every start-up wait (NATS, topology, pool, caches, locks) is raced against the stop
signal, every shutdown step is bounded, and a worker still alive ``HARD_EXIT_S`` after the signal exits
hard (a backstop for a wait we missed: a crash is safe, acks come only after commits).
"""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from telemetry_core.metrics import report_forever
from telemetry_core.nats_conn import close_nats, connect
from telemetry_core.pg_pool import close_pool, make_pool
from telemetry_core.retry import while_transient
from telemetry_core.settings import Settings
from telemetry_core.stopping import Stopped, bounded, until_stopped
from telemetry_core.topology import ensure_topology

T = TypeVar("T")
HARD_EXIT_S = 8.0
_STEP_S = 2.0  # bound of each shutdown step
Closer = Callable[[], Awaitable[object]]


@dataclass
class WorkerRuntime:
    """What a worker's composition root starts from."""

    stop: asyncio.Event
    nc: Client
    js: JetStreamContext
    database_url: str
    log: structlog.stdlib.BoundLogger
    closers: list[tuple[str, Closer]] = field(default_factory=list)

    async def until_stopped(self, aw: Awaitable[T]) -> T:
        """Await ``aw`` unless the stop signal comes first (then raise Stopped: the worker exits)."""
        return await until_stopped(self.stop, aw)

    def at_exit(self, what: str, close: Closer) -> None:
        """Run ``close`` at shutdown, bounded; closers run in reverse order of registration."""
        self.closers.append((what, close))

    async def open_pool(self, *, min_size: int, max_size: int, timeout_s: float = 30.0) -> AsyncConnectionPool:
        """A PostgreSQL pool, opened (waiting for PostgreSQL until it answers or stop) and closed at exit."""
        pool = make_pool(self.database_url, min_size=min_size, max_size=max_size, timeout_s=timeout_s)
        self.at_exit("close_pool", lambda: close_pool(pool))
        await self.until_stopped(pool.open(wait=True, timeout=30.0))
        return pool


async def _cancel(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _hard_exit(log: structlog.stdlib.BoundLogger) -> None:
    log.error("shutdown_overdue_exiting_hard", after_s=HARD_EXIT_S)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(70)


async def run_worker(
    settings: Settings, name: str, log: structlog.stdlib.BoundLogger, main: Callable[[WorkerRuntime], Awaitable[None]]
) -> None:
    """Connect to NATS (retrying at start-up), ensure streams and consumers, run ``main`` until stopped, close."""
    nats_url, database_url = settings.require_servers()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            log.info("stop_requested")
            stop.set()
            loop.call_later(HARD_EXIT_S, _hard_exit, log)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    closers: list[tuple[str, Closer]] = []
    try:
        nc = await until_stopped(stop, connect(nats_url, f"telemetry-{name}", log))
        closers.append(("close_nats", lambda: close_nats(nc, timeout_s=_STEP_S - 0.5)))  # runs last
        js = nc.jetstream(timeout=5.0)
        # A NATS node lost while this starts (a cluster electing leaders) is waited out, not an exit.
        await until_stopped(stop, while_transient(lambda: ensure_topology(js, settings)))
        # Figures and heartbeat to the gateways (telemetry_core/metrics.py); ends with the stop signal.
        reporter = asyncio.create_task(report_forever(nc, name, stop, log))
        closers.append(("stop_reporting", lambda: _cancel(reporter)))
        await main(WorkerRuntime(stop, nc, js, database_url, log, closers))
    except Stopped:
        log.info("stopped_while_waiting")
    finally:
        for what, close in reversed(closers):
            await bounded(close, _STEP_S, what, log)
        log.info("stopped")
