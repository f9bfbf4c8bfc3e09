"""Batchers: collect points from many devices and send them as one POST /bulk, by size or by time.

A batch is sent when it holds ``max_points`` points (in the thread or task that added the last one: the
caller feels the back-pressure) or when its oldest point has waited ``max_delay`` seconds (from a
background thread / task), and on ``flush()`` / ``close()``. Sends go one at a time. A send that
still fails after the client's retries is kept: the next ``add``, ``flush`` or ``close`` raises
BatchFailed with the points it held, so nothing is lost silently.
"""

import asyncio
import threading
import time
from collections.abc import Callable

from telemetry_client import calls
from telemetry_client.async_client import AsyncTelemetryClient
from telemetry_client.errors import TelemetryClientError
from telemetry_client.sync_client import TelemetryClient
from telemetry_schemas.api.ingest import MAX_BATCH_POINTS, BulkIngestResponse
from telemetry_schemas.values import Point

MAX_BULK_POINTS = 10_000  # the gateway's cap on one /bulk request


class BatchFailed(TelemetryClientError):
    """A batch could not be sent; ``points`` are what it held, ``__cause__`` why."""

    def __init__(self, points: dict[str, list[Point]], cause: Exception) -> None:
        super().__init__(f"a batch of {sum(map(len, points.values()))} points was not sent: {cause}")
        self.points = points


class _Buffer:
    """Points waiting to be sent, and since when the oldest has waited."""

    def __init__(self, max_points: int, max_delay: float) -> None:
        if not 1 <= max_points <= MAX_BULK_POINTS:
            raise ValueError(f"max_points must be 1-{MAX_BULK_POINTS}")
        if max_delay <= 0:
            raise ValueError("max_delay must be positive (seconds)")
        self.max_points = max_points
        self.max_delay = max_delay
        self.points: dict[str, list[Point]] = {}
        self.size = 0
        self.oldest: float | None = None  # monotonic time the oldest waiting point was added
        self.failure: BatchFailed | None = None
        self.requests = 0
        self.sent = 0

    def add(self, device_id: str, point: Point) -> bool:
        """Hold the point; True when the batch is full (by total, or one device at the per-device cap)."""
        held = self.points.setdefault(device_id, [])
        held.append(point)
        self.size += 1
        if self.oldest is None:
            self.oldest = time.monotonic()
        return self.size >= self.max_points or len(held) >= MAX_BATCH_POINTS

    def take(self) -> dict[str, list[Point]]:
        taken, self.points, self.size, self.oldest = self.points, {}, 0, None
        return taken

    def due_in(self) -> float | None:
        """Seconds until the time flush, or None when nothing waits."""
        return None if self.oldest is None else self.oldest + self.max_delay - time.monotonic()

    def raise_failure(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure


class Batcher:
    """Thread-safe batcher for TelemetryClient. Use as a context manager (close flushes)."""

    def __init__(self, client: TelemetryClient, *, max_points: int = 1000, max_delay: float = 1.0,
                 on_result: Callable[[BulkIngestResponse], None] | None = None) -> None:  # fmt: skip
        self._client = client
        self._buf = _Buffer(max_points, max_delay)
        self._on_result = on_result
        self._lock = threading.Condition()  # guards the buffer; the timer thread waits on it
        self._send_lock = threading.Lock()  # one send at a time, in order
        self._closed = False
        self._timer = threading.Thread(target=self._time_flushes, name="telemetry-batcher", daemon=True)
        self._timer.start()

    @property
    def requests(self) -> int:
        """POSTs sent so far."""
        return self._buf.requests

    @property
    def sent(self) -> int:
        """Points the service stored so far."""
        return self._buf.sent

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, device_id: str, point: Point) -> None:
        """Queue one point; sends the batch now if this point filled it."""
        with self._lock:
            if self._closed:
                raise TelemetryClientError("the batcher is closed")
            self._buf.raise_failure()
            full = self._buf.add(device_id, point)
            batch = self._buf.take() if full else None
            self._lock.notify()  # the timer learns about a new oldest point
        if batch:
            self._send(batch, raise_now=True)

    def flush(self) -> None:
        """Send whatever waits now."""
        with self._lock:
            batch = self._buf.take()
        if batch:
            self._send(batch, raise_now=True)
        with self._lock:
            self._buf.raise_failure()

    def close(self) -> None:
        """Flush, stop the timer thread; raise BatchFailed if the last send (or an earlier timed one) failed."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._timer.join()
        self.flush()

    def _send(self, batch: dict[str, list[Point]], *, raise_now: bool) -> None:
        with self._send_lock:
            try:
                result = self._client.execute(calls.send_bulk(batch))
            except TelemetryClientError as exc:
                failure = BatchFailed(batch, exc)
                if raise_now:
                    raise failure from exc
                with self._lock:
                    self._buf.failure = failure
                return
            self._buf.requests += 1
            self._buf.sent += result.ingested_count
        if self._on_result:
            self._on_result(result)

    def _time_flushes(self) -> None:
        while True:
            with self._lock:
                while not self._closed and ((due := self._buf.due_in()) is None or due > 0):
                    self._lock.wait(timeout=due)
                if self._closed:
                    return
                batch = self._buf.take()
            self._send(batch, raise_now=False)


class AsyncBatcher:
    """Batcher for AsyncTelemetryClient (one event loop). Use ``async with`` (exit flushes)."""

    def __init__(self, client: AsyncTelemetryClient, *, max_points: int = 1000, max_delay: float = 1.0,
                 on_result: Callable[[BulkIngestResponse], None] | None = None) -> None:  # fmt: skip
        self._client = client
        self._buf = _Buffer(max_points, max_delay)
        self._on_result = on_result
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closed = False
        self._timer: asyncio.Task[None] | None = None

    @property
    def requests(self) -> int:
        """POSTs sent so far."""
        return self._buf.requests

    @property
    def sent(self) -> int:
        """Points the service stored so far."""
        return self._buf.sent

    async def __aenter__(self) -> "AsyncBatcher":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def add(self, device_id: str, point: Point) -> None:
        """Queue one point; sends the batch now if this point filled it."""
        if self._closed:
            raise TelemetryClientError("the batcher is closed")
        if self._timer is None:  # started lazily: the constructor may run outside the loop
            self._timer = asyncio.create_task(self._time_flushes(), name="telemetry-batcher")
        self._buf.raise_failure()
        if self._buf.add(device_id, point):
            await self._send(self._buf.take(), raise_now=True)
        self._wake.set()

    async def flush(self) -> None:
        """Send whatever waits now."""
        batch = self._buf.take()
        if batch:
            await self._send(batch, raise_now=True)
        self._buf.raise_failure()

    async def aclose(self) -> None:
        """Flush and stop the timer task; raise BatchFailed if a send failed."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        await self.flush()

    async def _send(self, batch: dict[str, list[Point]], *, raise_now: bool) -> None:
        async with self._send_lock:
            try:
                result = await self._client.execute(calls.send_bulk(batch))
            except TelemetryClientError as exc:
                failure = BatchFailed(batch, exc)
                if raise_now:
                    raise failure from exc
                self._buf.failure = failure
                return
            self._buf.requests += 1
            self._buf.sent += result.ingested_count
        if self._on_result:
            self._on_result(result)

    async def _time_flushes(self) -> None:
        while True:
            due = self._buf.due_in()
            self._wake.clear()
            if due is None:
                await self._wake.wait()
            elif due > 0:
                await asyncio.sleep(due)
            else:
                await self._send(self._buf.take(), raise_now=False)
