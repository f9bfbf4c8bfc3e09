"""E5 real-time streaming end to end: two gateway copies, real NATS, a real WebSocket client."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import point
from tests.support.auth import create_key
from tests.support.eventually import eventually
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.ws_client import Received, close_code, collect, open_socket, quiet_for, subscribe

pytestmark = pytest.mark.e2e


def batch_path(device: str) -> str:
    return f"/api/v1/telemetry/devices/{device}/telemetry/batch"


@pytest.fixture(scope="module")
def other_gateway(servers: Servers, stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second gateway copy on the same servers (same keys): sockets opened here for subscriptions made there."""
    copy = Stack(servers, tmp_path_factory.mktemp("gateway-b"), api_key=stack.api_key)
    copy.start_all(("gateway",))
    yield copy
    copy.stop_all()


@pytest.fixture
async def aclient(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as c:
        yield c


async def post_points(client: httpx.AsyncClient, device: str, points: list[dict[str, Any]]) -> None:
    r = await client.post(batch_path(device), json={"data_points": points})
    assert r.status_code == 200 and r.json()["ingested_count"] == len(points), r.text


def values(received: Received) -> list[Any]:
    return [p["value"] for p in received.points]


async def test_socket_on_the_other_copy_gets_exactly_the_matching_points(
    client: httpx.Client, aclient: httpx.AsyncClient, other_gateway: Stack
) -> None:
    wanted, other = unique("live"), unique("live")
    answer = subscribe(client, device_ids=[wanted], metric_names=["temperature"], max_frequency=100)
    assert answer["websocket_url"] == f"/ws/telemetry/{answer['subscription_id']}"
    assert answer["message"] == "Subscription created successfully"
    async with open_socket(other_gateway.url, answer) as ws:
        await post_points(aclient, wanted, [point("temperature", 1.5), point("humidity", 50.0)])
        await post_points(aclient, other, [point("temperature", 99.0)])
        await post_points(aclient, wanted, [point("temperature", 2.5, tags={"site": "north"})])
        got = await collect(ws, lambda r: len(r.points) >= 2)
        assert values(got) == [1.5, 2.5]
        assert {p["device_id"] for p in got.points} == {wanted}
        assert got.points[1]["tags"] == {"site": "north"}
        message = got.messages[-1]
        assert message["subscription_id"] == answer["subscription_id"]
        assert message["device_id"] == wanted and message["dropped"] == 0
        assert message["sequence_number"] == got.points[-1]["sequence_number"]
        assert got.points[0]["sequence_number"] < got.points[1]["sequence_number"]
        assert await quiet_for(ws, 0.5) == []


async def test_tags_and_filter_condition_select_points(client: httpx.Client, aclient: httpx.AsyncClient) -> None:
    device = unique("live")
    answer = subscribe(client, device_ids=[device], tags={"site": "north"},
                       filter_condition="value > 25 and not (unit == 'F')", max_frequency=100)  # fmt: skip
    async with open_socket(client.base_url.__str__().rstrip("/"), answer) as ws:
        await post_points(aclient, device, [
            point(value=26.0, tags={"site": "north"}),
            point(value=20.0, tags={"site": "north"}),
            point(value=30.0, tags={"site": "south"}),
            point(value=40.0, tags={"site": "north"}, unit="F"),
            point(value="hot", tags={"site": "north"}),
            point(metric="pressure", value=27, tags={"site": "north", "rack": "7"}),
        ])  # fmt: skip
        got = await collect(ws, lambda r: len(r.points) >= 2)
        assert values(got) == [26.0, 27]
        assert await quiet_for(ws, 0.5) == []


async def test_rate_limit_coalesces_without_losing_points(client: httpx.Client, aclient: httpx.AsyncClient) -> None:
    device, period_ms, sends = unique("live"), 300, 24
    answer = subscribe(client, device_ids=[device], max_frequency=period_ms)
    async with open_socket(str(client.base_url).rstrip("/"), answer) as ws:
        reader = asyncio.create_task(collect(ws, lambda r: len(r.points) >= sends, within=30))
        for i in range(sends):
            await post_points(aclient, device, [point(value=float(i))])
            await asyncio.sleep(0.05)
        got = await reader
    assert values(got) == [float(i) for i in range(sends)]  # every point, in order, none twice
    assert got.dropped == 0
    gaps = [b - a for a, b in zip(got.at, got.at[1:], strict=False)]
    # Sent at least 300 ms apart; receipt times jitter under load, so allow 100 ms (unlimited, they came every 50).
    assert min(gaps) >= period_ms / 1000 - 0.1, gaps
    assert len(got.messages) < sends  # coalesced: 24 points over ~1.2 s cannot take 24 messages at 300 ms


async def test_unknown_and_cancelled_subscriptions_close_4004(
    client: httpx.Client, aclient: httpx.AsyncClient, stack: Stack
) -> None:
    base = str(client.base_url).rstrip("/")
    unknown = {"websocket_url": "/ws/telemetry/sub_000000000000000000000000", "connect_token": "1.x"}
    async with open_socket(base, unknown) as ws:
        assert await close_code(ws) == (4004, "subscription not found (unknown, cancelled or expired)")
    answer = subscribe(client, device_ids=[unique("live")])
    r = await aclient.delete(f"/api/v1/telemetry/subscribe/{answer['subscription_id']}")
    assert r.status_code == 200
    assert r.json() == {"subscription_id": answer["subscription_id"], "status": "cancelled",
                        "message": "Subscription cancelled"}  # fmt: skip
    # Checked before credentials: a cancelled id is 4004 even with a valid header key.
    async with open_socket(base, answer, headers=stack.headers) as ws:
        assert (await close_code(ws))[0] == 4004
    again = await aclient.delete(f"/api/v1/telemetry/subscribe/{answer['subscription_id']}")
    assert again.status_code == 404 and answer["subscription_id"] in again.json()["detail"]
    assert (await aclient.delete("/api/v1/telemetry/subscribe/sub_nope")).status_code == 404


async def test_credentials_token_or_headers(client: httpx.Client, stack: Stack, aclient: httpx.AsyncClient) -> None:
    base = str(client.base_url).rstrip("/")
    device = unique("live")
    answer = subscribe(client, device_ids=[device], max_frequency=100)
    async with open_socket(base, answer, use_token=False) as ws:
        assert await close_code(ws) == (4001, "send ?token=<connect_token> or X-Api-Key")
    other = subscribe(client, device_ids=[device])
    async with open_socket(base, {**answer, "connect_token": other["connect_token"]}) as ws:
        assert (await close_code(ws))[0] == 4001  # a token of another subscription
    async with open_socket(base, answer, use_token=False, headers={"X-Api-Key": "wrong"}) as ws:
        assert (await close_code(ws))[0] == 4001
    async with open_socket(base, answer, use_token=False, headers=stack.headers) as ws:
        await post_points(aclient, device, [point(value=7.0)])
        assert values(await collect(ws, lambda r: len(r.points) >= 1)) == [7.0]
    fresh = await aclient.post(f"/api/v1/telemetry/subscribe/{answer['subscription_id']}/token")
    assert fresh.status_code == 200
    async with open_socket(base, {**answer, "connect_token": fresh.json()["connect_token"]}) as ws:
        await post_points(aclient, device, [point(value=8.0)])
        assert values(await collect(ws, lambda r: len(r.points) >= 1)) == [8.0]
    async with open_socket(base, answer, since="12x") as ws:
        assert (await close_code(ws))[0] == 4400


async def test_delete_closes_the_socket_held_by_the_other_copy(
    client: httpx.Client, aclient: httpx.AsyncClient, other_gateway: Stack
) -> None:
    answer = subscribe(client, device_ids=[unique("live")])
    async with open_socket(other_gateway.url, answer) as ws:
        eventually(lambda: _open_sockets(other_gateway) >= 1, timeout=10, what="socket registered")
        started = time.monotonic()
        assert (await aclient.delete(f"/api/v1/telemetry/subscribe/{answer['subscription_id']}")).status_code == 200
        assert await close_code(ws, within=5) == (1000, "subscription cancelled")
        assert time.monotonic() - started < 5
    eventually(lambda: _open_sockets(other_gateway) == 0, timeout=10, what="socket freed")


def _open_sockets(gateway: Stack) -> int:
    r = httpx.get(f"{gateway.url}/health/detailed", headers=gateway.headers, timeout=5)
    return int(r.json()["components"]["real_time_stream"]["metrics"]["open_sockets"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_frequency": 99}, "max_frequency"),
        ({"max_frequency": 10_001}, "max_frequency"),
        ({"max_frequency": "fast"}, "max_frequency"),
        ({"device_ids": ["bad device"]}, "device_ids[0]"),
        ({"metric_names": ["ok", "a.b"]}, "metric_names[1]"),
        ({"tags": {"site": 3}}, "tags"),
        ({"filter_condition": "__import__('os').system('true')"}, "filter_condition"),
        ({"filter_condition": "value >"}, "filter_condition"),
        ({"filter_condition": "value > 25 or"}, "filter_condition"),
        ({"filter_condition": ""}, "filter_condition"),
    ],
)
def test_bad_subscribe_bodies_are_422_naming_the_field(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    r = client.post("/api/v1/telemetry/subscribe", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"]


def test_subscribe_defaults(client: httpx.Client) -> None:
    answer = subscribe(client)
    assert answer["subscription_id"].startswith("sub_")
    assert answer["expires_in"] == 300
    assert answer["connect_token"].split(".")[0].isdigit()


# -- resume, and sockets that cannot keep up --------------------------------------------------------------


@pytest.fixture(scope="module")
def small_buffer_gateway(servers: Servers, stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway copy whose sockets buffer at most 200 points between two messages."""
    copy = Stack(servers, tmp_path_factory.mktemp("gateway-c"), api_key=stack.api_key,
                 extra_env={"TELEMETRY_STREAM_BUFFER": "200"})  # fmt: skip
    copy.start_all(("gateway",))
    yield copy
    copy.stop_all()


@pytest.fixture(scope="module")
def history(stack: Stack) -> tuple[str, list[dict[str, Any]]]:
    """A device with 12 acknowledged batches (1-3 points each), and all its points read back from since=0."""
    device = unique("resume")
    sizes = [1 + i % 3 for i in range(12)]
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=15) as c:
        n = 0
        for size in sizes:
            r = c.post(batch_path(device), json={"data_points": [point(value=float(n + k)) for k in range(size)]})
            assert r.status_code == 200
            n += size
        answer = subscribe(c, device_ids=[device], max_frequency=100)

    async def read_all() -> list[dict[str, Any]]:
        async with open_socket(stack.url, answer, since=0) as ws:
            return (await collect(ws, lambda r: len(r.points) >= n)).points

    points = asyncio.run(read_all())
    assert [p["value"] for p in points] == [float(i) for i in range(n)]
    return device, points


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_resume_since_has_no_gap_and_no_duplicate(stack: Stack, history: tuple[str, list[dict[str, Any]]],
                                                  data: st.DataObject) -> None:  # fmt: skip
    device, points = history
    seqs = [p["sequence_number"] for p in points]
    # Any cut: at a message, between two of this device's messages (other devices' sequences), or before all.
    # (Drawn as a fraction of the range: the history grows with each example, so its bounds may not be drawn.)
    low, high = max(0, seqs[0] - 3), seqs[-1]
    since = low + (high - low) * data.draw(st.integers(min_value=0, max_value=10_000), label="cut") // 10_000
    expected = [p["value"] for p in points if p["sequence_number"] > since]
    live_value = float(1000 + len(points))

    async def resume() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=15) as c:
            answer = (await c.post("/api/v1/telemetry/subscribe", json={"device_ids": [device],
                                                                        "max_frequency": 100})).json()  # fmt: skip
            async with open_socket(stack.url, answer, since=since) as ws:
                replayed = await collect(ws, lambda r: len(r.points) >= len(expected)) if expected else Received()
                await post_points(c, device, [point(value=live_value)])
                live = await collect(ws, lambda r: len(r.points) >= 1)
                assert await quiet_for(ws, 0.3) == []
                return replayed.points + live.points

    got = asyncio.run(resume())
    assert [p["value"] for p in got] == [*expected, live_value]
    got_seqs = [p["sequence_number"] for p in got]
    assert got_seqs == sorted(got_seqs) and got_seqs[0] > since
    points.append(got[-1])  # the live point is history for the next example


async def test_replay_waits_for_the_socket_instead_of_dropping(
    client: httpx.Client, aclient: httpx.AsyncClient, small_buffer_gateway: Stack
) -> None:
    device = unique("replay")
    for b in range(4):
        await post_points(aclient, device, [point(value=float(b * 250 + i), ts=_ts(b * 250 + i)) for i in range(250)])
    answer = subscribe(client, device_ids=[device], max_frequency=100)
    async with open_socket(small_buffer_gateway.url, answer, since=0) as ws:
        got = await collect(ws, lambda r: len(r.points) >= 1000, within=30)
    assert values(got) == [float(i) for i in range(1000)]
    assert got.dropped == 0
    assert max(len(m["data_points"]) for m in got.messages) <= 250  # one message at a time, never > buffer + 1 batch


def _ts(i: int) -> str:
    return f"2025-12-18T10:{i // 60 % 60:02d}:{i % 60:02d}Z"


async def test_a_stalled_socket_drops_oldest_and_counts_them(
    client: httpx.Client, aclient: httpx.AsyncClient, small_buffer_gateway: Stack
) -> None:
    device, batches, size = unique("stall"), 30, 200
    answer = subscribe(client, device_ids=[device], max_frequency=100)
    # A client that stops reading: a small receive buffer, and at most four messages queued in the library.
    host, port = "127.0.0.1", small_buffer_gateway.port
    sock = socket.create_connection((host, port))
    # (64 KB, not less: a window of a few KB crawls on delayed acknowledgements when reading resumes.)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    sock.setblocking(False)
    big_tags = {f"t{k}": "x" * 250 for k in range(8)}  # ~2 KB a point: the socket's pipes fill quickly
    # No client pings: a client that reads nothing would not see their answers and would close first.
    async with open_socket(
        small_buffer_gateway.url, answer, sock=sock, max_queue=(4, 1), ping_interval=None, max_size=None
    ) as ws:
        for b in range(batches):
            await post_points(aclient, device, [point(value=float(b * size + i), ts=_ts(b * size + i), tags=big_tags)
                                                for i in range(size)])  # fmt: skip
        total = batches * size

        def dropped_reported() -> int:
            r = httpx.get(f"{small_buffer_gateway.url}/health/detailed", headers=small_buffer_gateway.headers)
            return int(r.json()["components"]["real_time_stream"]["metrics"]["dropped_points_open_sockets"])

        # Polled from a thread: this loop must stay free for the socket.
        dropped = await asyncio.to_thread(eventually, dropped_reported, timeout=30, what="drops reported")
        assert dropped > 0
        got = await collect(ws, lambda r: len(r.points) + r.dropped >= total, within=60)
    assert len(got.points) + got.dropped == total  # nothing vanished without being counted
    got_values = values(got)
    assert got_values == sorted(set(got_values))  # what arrived is in order, without duplicates
    assert got_values[-1] == float(total - 1)  # the newest are kept, the oldest dropped


async def test_socket_credentials_need_the_read_scope(client: httpx.Client, servers: Servers) -> None:
    base = str(client.base_url).rstrip("/")
    answer = subscribe(client, device_ids=[unique("live")])
    _, ingest_key = create_key(servers, unique("sensor"), "ingest")
    _, read_key = create_key(servers, unique("dashboard"), "read")
    async with open_socket(base, answer, use_token=False, headers={"X-Api-Key": ingest_key}) as ws:
        assert await close_code(ws) == (4003, "needs scope read; these credentials have ingest")
    async with open_socket(base, answer, use_token=False, headers={"X-Api-Key": read_key}) as ws:
        assert await quiet_for(ws, 0.3) == []  # admitted: open, nothing to say yet
        assert ws.close_code is None
    async with httpx.AsyncClient(base_url=base) as c:
        r = await c.post("/api/v1/telemetry/subscribe", json={}, headers={"X-Api-Key": read_key})
        assert r.status_code == 201  # a dashboard's read key may subscribe
        r = await c.post("/api/v1/telemetry/subscribe", json={}, headers={"X-Api-Key": ingest_key})
        assert r.status_code == 403 and "needs scope read" in r.json()["detail"]
