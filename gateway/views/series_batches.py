"""One-series reads asked at the same time, answered by one statement (gateway/views/aggregates.py, latest.py).

A dashboard asks many one-series aggregates at once (a panel per device or metric, and every viewer). At 50
requests in flight over a 10-connection pool, each paid a round trip of its own: psycopg's execute, PostgreSQL's
bind and execute, two wake-ups of two processes on two cores. Requests of one statement shape (plan,
aggregation, interval: ``Shape``) that arrive while another of their shape is being answered wait here instead;
the next runner runs up to ``max_batch`` of them as one statement: the one-series statement applied to each row of an
``unnest`` of their devices, metrics and ranges (``CROSS JOIN LATERAL``, the same primary-key descent per
series), its rows split by request. A request that finds no runner of its shape runs in its own task, so an
unloaded gateway runs each request alone, at once, with its own prepared statement; under load, runner tasks (at
most ``lanes`` per shape) take what has queued.

The latest-value cache's fill (gateway/views/latest.py, a miss of GET …/latest) is batched the same way. Aggregates
from rollups only: an aggregate over raw points may be heavy (it waits for a heavy-query slot), and one slow
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

# The batch statement around one series' statement: each per-request parameter it names (%(device)s, %(metric)s,
# %(start)s, %(end)s) becomes a column of the unnested requests: (name, list parameter, element type, column).
_PER_REQUEST = (
    ("device", "devices", "text", "device"),
    ("metric", "metrics", "text", "metric"),
    ("start", "starts", "timestamptz", "t0"),
    ("end", "ends", "timestamptz", "t1"),
)
_LISTS = {name: plural for name, plural, _, _ in _PER_REQUEST}


def batch_statement(one: bytes) -> bytes:
    """The statement answering many series at once, from the statement of one (rows: request index, then its)."""
    used = [p for p in _PER_REQUEST if f"%({p[0]})s".encode() in one]
    lists = "".join(f", %({plural})s::{kind}[]" for _, plural, kind, _ in used)
    columns = "".join(f", {column}" for *_, column in used)
    inner = one
    for name, _, _, column in used:
        inner = inner.replace(f"%({name})s".encode(), f"q.{column}".encode())
    # Built from this module's constants only (_PER_REQUEST): no value reaches the text.
    head = f"SELECT q.i, s.* FROM unnest(%(i)s::int4[]{lists}) AS q(i{columns}) CROSS JOIN LATERAL ("  # noqa: S608
    # OFFSET 0 keeps the subquery from being pulled up into a join: a generic plan could then hash-join the requests
    # with a sequential scan of the whole table (it did, for the latest-value fill) instead of one primary-key
    # descent per request (tests/integration/test_generic_plans.py).
    return head.encode() + inner.rstrip() + b" OFFSET 0) AS s ORDER BY 1, 2"


class SeriesBatches:
    """Runs queued one-series statements of one pool in batches; at most ``lanes`` runners per shape."""

    def __init__(self, pool: AsyncConnectionPool, lanes: int, max_batch: int) -> None:
        # Weakly: the registry below maps the pool to this object, which must not keep the pool alive in turn.
        self._pool, self._lanes, self._max = weakref.ref(pool), lanes, max_batch
        self._queues: dict[Shape, list[_Waiting]] = {}
        self._runners: dict[Shape, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # kept: the loop holds tasks only weakly
        self.statements = 0  # statements run (a batch is one): tests and benchmarks read it

    async def rows(self, shape: Shape, one: bytes, many: bytes, params: Params) -> Rows:
        """The rows of ``one`` with ``params``, run alone or with others of ``shape`` as ``many``.

        A request that finds no runner of its shape runs a batch in its own task (its own request, and whatever
        queued meanwhile): unloaded, no task is started and no loop turn passes between the request and its
        statement. Otherwise a runner task is started if a lane is free: it runs one loop turn later, when the
        requests that came in the same turn have queued too (bigger batches than a runner per request: 1.7x the
        queries/s against 1.2x, tests/bench/series_batches.py).
        """
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(shape, []).append((params, future))
        if not self._runners.get(shape):
            self._runners[shape] = 1
            try:
                await self._batch(shape, one, many)
            except BaseException:  # cancelled: the batch put its requests back; this one is nobody's now
                future.cancel()
                raise
            finally:
                self._leave(shape, one, many)
        else:
            self._start_runner(shape, one, many)
        return await future

    def _start_runner(self, shape: Shape, one: bytes, many: bytes) -> None:
        if self._runners.get(shape, 0) >= self._lanes or not self._queues.get(shape):
            return
        self._runners[shape] = self._runners.get(shape, 0) + 1
        task = asyncio.get_running_loop().create_task(self._run(shape, one, many))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _leave(self, shape: Shape, one: bytes, many: bytes) -> None:
        """A runner is done; requests queued while every lane was busy get a runner of their own."""
        self._runners[shape] -= 1
        if not self._runners[shape]:
            del self._runners[shape]
        self._start_runner(shape, one, many)

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
        """A runner of its own: batches until nothing of ``shape`` waits."""
        try:
            while self._queues.get(shape):
                await self._batch(shape, one, many)
        finally:
            self._leave(shape, one, many)

    async def _batch(self, shape: Shape, one: bytes, many: bytes) -> None:
        """Take a connection, then what waits (up to max_batch), and answer it with one statement."""
        batch: list[_Waiting] = []
        try:
            pool = self._pool()
            if pool is None:
                raise RuntimeError("the connection pool of these reads is gone")
            async with pool.connection() as conn:
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
        except BaseException:  # the task running it was cancelled: its requests wait for the next runner
            self._queues[shape] = [w for w in batch if not w[1].done()] + self._queues.get(shape, [])
            raise


def _batch_params(batch: Sequence[_Waiting]) -> Params:
    """One list per per-request parameter, the rest (the shape's) from the first request."""
    first = batch[0][0]
    params = {k: v for k, v in first.items() if k not in _LISTS}
    params["i"] = list(range(len(batch)))
    for name, plural in _LISTS.items():
        if name in first:
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
