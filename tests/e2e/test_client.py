"""telemetry_client against the real service: retries on 503/429 (Retry-After), gzip, batching, streaming.

A FlakyProxy (a real HTTP server on loopback) sits between the client and the gateway where a test must
see the wire: the 503s it answers, the waits between attempts, the compressed bodies, each batch's size.
"""

import asyncio
import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from telemetry_client import (
    AsyncBatcher,
    AsyncTelemetryClient,
    Batcher,
    Point,
    ServiceUnavailable,
    TelemetryClient,
    calls,
)
from telemetry_client.errors import TelemetryApiError
from telemetry_client.streaming import read_stream
from telemetry_client.transport import RetryPolicy
from telemetry_schemas.api.queries import QueryRequest
from telemetry_schemas.api.stream import StreamMessage, SubscribeRequest
from tests.e2e.conftest import wait_rows
from tests.support.flaky_proxy import Seen, flaky_proxy
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
FAST = RetryPolicy(attempts=4, backoff=0.01, max_wait=5)


def pt(value: Any, metric: str = "temperature", seconds_ago: float = 0, **extra: Any) -> Point:
    return Point(timestamp=datetime.now(UTC) - timedelta(seconds=seconds_ago), metric_name=metric, value=value, **extra)


def body_json(seen: Seen) -> Any:
    raw = gzip.decompress(seen.body) if seen.headers.get("content-encoding") == "gzip" else seen.body
    return json.loads(raw)


def test_retries_503_after_the_retry_after_it_names_then_stores(stack: Stack, servers: Servers) -> None:
    device = unique("cl_retry")
    with flaky_proxy(stack.url, fail=1, retry_after="1") as proxy, \
         TelemetryClient(proxy.url, stack.api_key, retry=FAST) as tc:  # fmt: skip
        answer = tc.send(device, pt(21.5))
        tries = proxy.requests_to(device)
    assert answer.success and answer.device_id == device
    assert [s.answered for s in tries] == [503, 200]
    # Without Retry-After this policy would wait ~0.01-0.02 s; the service asked for 1 s.
    assert tries[1].at - tries[0].at >= 0.95
    assert [(r[0], r[3]) for r in wait_rows(servers, device, 1)] == [("temperature", 21.5)]


def test_gives_up_after_its_attempts_with_the_services_detail(stack: Stack) -> None:
    device = unique("cl_giveup")
    with flaky_proxy(stack.url, fail=100, status=429) as proxy, \
         TelemetryClient(proxy.url, stack.api_key, retry=RetryPolicy(attempts=3, backoff=0.01)) as tc, \
         pytest.raises(ServiceUnavailable) as caught:  # fmt: skip
        tc.send(device, pt(1.0))
    assert [s.answered for s in proxy.requests_to(device)] == [429, 429, 429]
    assert caught.value.status == 429 and caught.value.detail == "test proxy: service unavailable"


def test_no_connection_is_service_unavailable_after_retries() -> None:
    with TelemetryClient("http://127.0.0.1:9", "k", retry=RetryPolicy(attempts=2, backoff=0.01)) as tc, \
         pytest.raises(ServiceUnavailable) as caught:  # fmt: skip
        tc.latest("d", "m")
    assert caught.value.status == 0 and "cannot reach" in caught.value.detail


def test_gzip_bodies_reach_the_service_compressed_and_are_stored(stack: Stack, servers: Servers) -> None:
    device = unique("cl_gzip")
    points = [pt(float(i), seconds_ago=60 - i, tags={"site": "north"}) for i in range(40)]
    with flaky_proxy(stack.url) as proxy, TelemetryClient(proxy.url, stack.api_key) as tc:
        answer = tc.send_batch(device, points)
        tc.send(device, pt(99.0, metric="humidity"))  # a small body: not worth compressing
        batch, single = proxy.requests_to(device)
    assert answer.ingested_count == 40 and answer.failed_count == 0
    assert batch.headers["content-encoding"] == "gzip" and batch.body[:2] == b"\x1f\x8b"
    assert len(body_json(batch)["data_points"]) == 40
    assert "content-encoding" not in single.headers and body_json(single)["value"] == 99.0
    stored = wait_rows(servers, device, 41)
    assert sorted(r[3] for r in stored if r[0] == "temperature") == [float(i) for i in range(40)]


def test_batcher_flushes_when_full(stack: Stack, servers: Servers) -> None:
    a, b = unique("cl_size_a"), unique("cl_size_b")
    with flaky_proxy(stack.url) as proxy, TelemetryClient(proxy.url, stack.api_key) as tc:
        with Batcher(tc, max_points=5, max_delay=60) as batcher:
            for i in range(12):
                batcher.add(a if i % 2 else b, pt(float(i), seconds_ago=30 - i))
            # Two full batches went out while adding (no timer involved: max_delay is a minute).
            full = proxy.requests_to("/bulk")
            assert [sum(map(len, body_json(s).values())) for s in full] == [5, 5]
            assert batcher.sent == 10
        sizes = [sum(map(len, body_json(s).values())) for s in proxy.requests_to("/bulk")]
    assert sizes == [5, 5, 2]  # close() sent the rest
    assert [r[3] for r in wait_rows(servers, a, 6)] == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    assert [r[3] for r in wait_rows(servers, b, 6)] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]


def test_batcher_flushes_after_max_delay(stack: Stack, servers: Servers) -> None:
    device = unique("cl_time")
    with flaky_proxy(stack.url) as proxy, TelemetryClient(proxy.url, stack.api_key) as tc:
        batcher = Batcher(tc, max_points=1000, max_delay=0.3)
        added = time.monotonic()
        for i in range(3):
            batcher.add(device, pt(float(i), seconds_ago=10 - i))
        assert proxy.requests_to("/bulk") == []  # not full: nothing sent yet
        # Nobody calls flush: the timer must send them.
        stored = wait_rows(servers, device, 3)
        sent = proxy.requests_to("/bulk")
        batcher.close()  # nothing left: no further request
        after_close = proxy.requests_to("/bulk")
    assert [r[3] for r in stored] == [0.0, 1.0, 2.0]
    assert len(sent) == 1 and sent[0].at - added >= 0.25
    assert len(after_close) == 1


async def test_async_batcher_and_client_query(stack: Stack, servers: Servers) -> None:
    device = unique("cl_async")
    start = datetime.now(UTC) - timedelta(minutes=5)
    async with AsyncTelemetryClient(stack.url, stack.api_key) as tc:
        async with AsyncBatcher(tc, max_points=3, max_delay=0.2) as batcher:
            for i in range(4):  # three go by size, the fourth by time
                await batcher.add(device, pt(float(i), seconds_ago=20 - i, unit="celsius"))
            await asyncio.to_thread(wait_rows, servers, device, 4)
            assert batcher.requests == 2 and batcher.sent == 4
        answer = await tc.query(QueryRequest(metrics=["temperature"], devices=[device], start_time=start,
                                             end_time=datetime.now(UTC) + timedelta(seconds=1)))  # fmt: skip
        # The latest value is a read model the projection worker updates after the raw rows: poll it (a loaded
        # machine showed the third point for a moment).
        deadline = time.monotonic() + 30
        while True:
            try:
                latest = await tc.latest(device, "temperature")
            except TelemetryApiError:
                latest = None
            if (latest is not None and latest.value == 3.0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert latest is not None
    assert [(p.value, p.unit) for p in answer.data_points] == [(float(i), "celsius") for i in range(4)]
    assert answer.count == 4 and latest.value == 3.0


async def test_stream_receives_an_ingested_point(stack: Stack) -> None:
    device = unique("cl_stream")
    sent: list[float] = []
    async with AsyncTelemetryClient(stack.url, stack.api_key) as tc:

        async def first_message() -> StreamMessage:
            request = SubscribeRequest(device_ids=[device], metric_names=["temperature"], max_frequency=100)
            async for message in tc.stream(request):
                return message
            raise AssertionError("the stream ended without a message")

        reader = asyncio.create_task(first_message())
        deadline = time.monotonic() + 15
        # The socket follows new points from when it opens: send until one arrives (poll on state, not time).
        while not reader.done() and time.monotonic() < deadline:
            value = 20.0 + len(sent)
            await tc.send(device, pt(value, tags={"site": "north"}))
            sent.append(value)
            await asyncio.wait({reader}, timeout=0.3)
        message = await asyncio.wait_for(reader, 1)
    assert isinstance(message, StreamMessage) and message.sequence_number > 0
    got = message.data_points[0]
    assert got.device_id == device and got.metric_name == "temperature" and got.tags == {"site": "north"}
    assert got.value in sent


async def test_stream_reconnects_with_a_fresh_token_and_resumes_without_gap(stack: Stack) -> None:
    device = unique("cl_resume")
    request = SubscribeRequest(device_ids=[device], metric_names=["temperature"], max_frequency=100)
    async with AsyncTelemetryClient(stack.url, stack.api_key) as tc:
        sub = await tc.subscribe(request)
        tokens = 0

        async def fresh_token() -> str:
            nonlocal tokens
            tokens += 1
            return (await tc.execute(calls.connect_token(sub.subscription_id))).connect_token

        async def first(since: int | None, token: str) -> StreamMessage:
            stream = read_stream(stack.url, sub.websocket_url, token, fresh_token, since=since)
            try:
                return await anext(stream)
            finally:
                await stream.aclose()

        # A refused token (closed 4001) is not the end: the client asks for a fresh one and connects again.
        reader = asyncio.create_task(first(None, "not-a-token"))
        sent: list[float] = []
        deadline = time.monotonic() + 15
        while not reader.done() and time.monotonic() < deadline:
            sent.append(10.0 + len(sent))
            await tc.send(device, pt(sent[-1]))
            await asyncio.wait({reader}, timeout=0.3)
        message = await asyncio.wait_for(reader, 1)
        assert tokens >= 1 and message.data_points[0].value in sent
        # While no socket is open a point arrives; resuming after the last message gets it, and only what followed.
        await tc.send(device, pt(99.0))
        resumed = await asyncio.wait_for(first(message.sequence_number, (await fresh_token())), 15)
        await tc.unsubscribe(sub.subscription_id)
    later = [p.value for p in resumed.data_points]
    assert later[-1] == 99.0 and set(later[:-1]) <= set(sent) - {p.value for p in message.data_points}
