"""CPU-bound work off the gateway's event loop: a process pool, started on first use, shut down with the app.

A thread would not do: pure-Python work holds the GIL, and /health, ingestion and every other
request would wait behind it. Worker processes are spawned (not forked from a process running an
event loop and open sockets), and each exits on its own once the gateway is gone, even SIGKILLed:
a pool worker alone would wait for work forever as an orphan.
"""

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import structlog

from telemetry_core.errors import ServiceUnavailableError

R = TypeVar("R")
log = structlog.get_logger()
# How often a worker process looks whether the gateway that started it is still there.
PARENT_CHECK_S = 0.5


def _exit_with(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)  # the gateway is gone: nobody will ever collect a result


def _watch_parent(parent_pid: int) -> None:
    """Worker initializer: a daemon thread ends the worker when its parent (the gateway) dies."""
    threading.Thread(target=_exit_with, args=(parent_pid,), name="exit-with-gateway", daemon=True).start()


class OffLoop:
    """Runs a picklable function in a worker process and awaits its result."""

    def __init__(self, workers: int | None = None) -> None:
        self._workers = workers or min(2, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        """``fn(*args)`` in a worker process; 503 (and a fresh pool next time) when a worker died."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:
            log.error("worker_process_died", function=getattr(fn, "__name__", repr(fn)))
            self._pool = None
            raise ServiceUnavailableError("a worker process died while computing the answer; retry") from None

    async def shutdown(self) -> None:
        """Cancel queued work, wait for running work, stop the processes (off the loop: it may block)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
