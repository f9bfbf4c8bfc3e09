"""A NATS flush that returns only once the server has seen everything written before it.

``Client.flush()`` is documented as "ensuring what we have written so far has made it to the server": it sends a
PING and waits for the PONG. But nats-py (2.16.0, the locked version, and earlier) writes that PING straight to the
socket while ``publish()`` and ``subscribe()`` leave their PUB and SUB in the client's pending buffer for its flusher
task, which has not run yet when ``flush()`` follows without a loop turn between them. The PING goes out first, and
the PONG can come back before the server has routed the message or registered the subscription
(tests/integration/test_nats_flush.py shows both). The service relies on that ordering: an ingest transaction's
announcement to the gateways before its commit (ingest_worker/storing.py), a subscription that must exist before
the cache it feeds answers (gateway/latest_feed.py).

``flush`` here first hands the pending buffer to the socket (the client's own force-flush, which waits for its
flusher task to write it) and only then sends the PING: on one TCP connection, in that order.
"""

import asyncio

from nats.aio.client import Client

DEFAULT_TIMEOUT_S = 10.0


async def flush(nc: Client, timeout: float = DEFAULT_TIMEOUT_S) -> None:  # noqa: ASYNC109  # as Client.flush
    """Return once nats-server has processed every command written on ``nc`` before this call.

    Raises what ``Client.flush`` raises (``nats.errors.FlushTimeoutError`` after ``timeout`` seconds,
    ``ConnectionClosedError``); ``asyncio.TimeoutError`` if the pending buffer cannot be written within ``timeout``.
    """
    # Private, and pinned by the test: nats-py has no public call that writes the pending buffer and waits.
    await asyncio.wait_for(nc._flush_pending(force_flush=True), timeout)
    await nc.flush(timeout=timeout)  # type: ignore[arg-type]  # nats-py annotates it as int
