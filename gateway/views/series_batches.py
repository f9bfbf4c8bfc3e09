"""One-series aggregates asked at the same time, answered by one statement (used by gateway/views/aggregates.py).

A dashboard asks many one-series aggregates at once (a panel per device or metric, and every viewer). At 50
requests in flight over a 10-connection pool, each paid a round trip of its own: psycopg's execute, PostgreSQL's
bind and execute, two wake-ups of two processes on two cores. Requests of one statement shape (plan,
aggregation, interval: ``Shape``) that arrive while connections are busy wait here instead; the next connection
free runs up to ``max_batch`` of them as one statement: the one-series statement applied to each row of an
``unnest`` of their devices, metrics and ranges (``CROSS JOIN LATERAL``, the same primary-key descent per
series), its rows split by request. A request that finds a runner slot free (fewer than ``lanes`` runners of its
shape) starts one, so an unloaded gateway runs each request alone, at once, with its own prepared statement.

Rollup sources only: an aggregate over raw points may be heavy (it waits for a heavy-query slot), and one slow
series would hold every answer of its batch. A statement error fails the requests of its batch, as it would have
failed each of them.
"""

import asyncio
import weakref
from collections.abc import Hashable, Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from gateway.metrics import QUERY_BATCH_REQUESTS

Params = dict[str, Any]
Rows = list[tuple[Any, ...]]
Shape = Hashable  # what a batch shares: its statements and every parameter but the series and the range
_Waiting = tuple[Params, "asyncio.Future[Rows]"]

# The batch statement around one series' statement: its %(device)s, %(metric)s, %(start)s and %(end)s become the
# columns of each unnested request (aggregates.py's statements name them so).
_BATCH_HEAD = (
    b"SELECT q.i, s.* FROM unnest(%(i)s::int4[], %(devices)s::text[], %(metrics)s::text[], "
    b"%(starts)s::timestamptz[], %(ends)s::timestamptz[]) AS q(i, device, metric, t0, t1) CROSS JOIN LATERAL ("
)
_BATCH_TAIL = b") AS s ORDER BY 1, 2"
_PER_REQUEST = {b"%(device)s": b"q.device", b"%(metric)s": b"q.metric", b"%(start)s": b"q.t0", b"%(end)s": b"q.t1"}
_LISTS = {"device": "devices", "metric": "metrics", "start": "starts", "end": "ends"}


def batch_statement(one: bytes) -> bytes:
    """The statement answering many series at once, from the statement of one (rows: request index, then its)."""
    inner = one
    for param, column in _PER_REQUEST.items():
        inner = inner.replace(param, column)
    return _BATCH_HEAD + inner + _BATCH_TAIL


class SeriesBatches:
    """Runs queued one-series statements of one pool in batches; at most ``lanes`` runners per shape."""

    def __init__(self, pool: AsyncConnectionPool, lanes: int, max_batch: int) -> None:
        self._pool, self._lanes, self._max = pool, lanes, max_batch
        self._queues: dict[Shape, list[_Waiting]] = {}
        self._runners: dict[Shape, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # kept: the loop holds tasks only weakly
        self.statements = 0  # statements run (a batch is one): tests and benchmarks read it

    async def rows(self, shape: Shape, one: bytes, many: bytes, params: Params) -> Rows:
        """The rows of ``one`` with ``params``, run alone or with others of ``shape`` as ``many``."""
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(shape, []).append((params, future))
        self._start_runner(shape, one, many)
        return await future

    def _start_runner(self, shape: Shape, one: bytes, many: bytes) -> None:
        if self._runners.get(shape, 0) >= self._lanes or not self._queues.get(shape):
            return
        self._runners[shape] = self._runners.get(shape, 0) + 1
        task = asyncio.get_running_loop().create_task(self._run(shape, one, many))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, shape: Shape) -> list[_Waiting]:
        """Up to max_batch waiting requests of ``shape`` (those given up on meanwhile are dropped)."""
        queue = self._queues.get(shape, [])
        live = [w for w in queue if not w[1].done()]
        batch, rest = live[: self._max], live[self._max :]
        if rest:
            self._queues[shape] = rest
        else:
            self._queues.pop(shape, None)
        return batch

    async def _run(self, shape: Shape, one: bytes, many: bytes) -> None:
        try:
            while self._queues.get(shape):
                batch: list[_Waiting] = []
                try:
                    async with self._pool.connection() as conn:
                        batch = self._take(shape)  # taken once a connection is in hand: the batch is as full as can be
                        if not batch:
                            return
                        self.statements += 1
                        QUERY_BATCH_REQUESTS.observe(len(batch))
                        if len(batch) == 1:
                            cur = await conn.execute(one, batch[0][0], prepare=True)
                            _settle(batch, [await cur.fetchall()])
                        else:
                            cur = await conn.execute(many, _batch_params(batch), prepare=True)
                            _settle(batch, _split(await cur.fetchall(), len(batch)))
                except Exception as exc:  # the pool's timeout, a failed statement: each request of the batch
                    for _, future in batch or self._take(shape):
                        if not future.done():
                            future.set_exception(exc)
        finally:
            self._runners[shape] -= 1
            if not self._runners[shape]:
                del self._runners[shape]
            # A request queued while this runner was finishing found the lanes full: run it.
            self._start_runner(shape, one, many)


def _batch_params(batch: Sequence[_Waiting]) -> Params:
    """One list per per-request parameter, the rest (the shape's) from the first request."""
    first = batch[0][0]
    params = {k: v for k, v in first.items() if k not in _LISTS}
    params["i"] = list(range(len(batch)))
    for name, plural in _LISTS.items():
        params[plural] = [p[name] for p, _ in batch]
    return params


def _split(rows: Rows, n: int) -> list[Rows]:
    out: list[Rows] = [[] for _ in range(n)]
    for row in rows:
        out[row[0]].append(tuple(row[1:]))
    return out


def _settle(batch: Sequence[_Waiting], answers: Sequence[Rows]) -> None:
    for (_, future), rows in zip(batch, answers, strict=True):
        if not future.done():
            future.set_result(rows)


_BATCHES: "weakref.WeakKeyDictionary[AsyncConnectionPool, SeriesBatches]" = weakref.WeakKeyDictionary()


def batch_series_reads(pool: AsyncConnectionPool, max_batch: int) -> None:
    """Let one-series aggregates on ``pool`` run in batches of up to ``max_batch`` (the gateway's read pools)."""
    if max_batch > 1:
        _BATCHES[pool] = SeriesBatches(pool, lanes=pool.max_size, max_batch=max_batch)


def batches_of(pool: AsyncConnectionPool) -> SeriesBatches | None:
    """The pool's batches, None when its reads run one statement each."""
    return _BATCHES.get(pool)
