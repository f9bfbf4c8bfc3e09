"""telemetry_core.nats_flush: a flush returns only once the server has seen what was written before it.

What a client writes is observed on the wire, through a relay in front of the real nats-server (TcpCut keeps
the bytes clients send). The first test pins the nats-py behaviour the helper exists for; when it fails, nats-py
orders its own flush after the pending commands and the helper can go.
"""

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from telemetry_core.nats_flush import flush
from tests.integration.runtime_support import until
from tests.support.ids import unique
from tests.support.servers import Servers
from tests.support.tcp_cut import TcpCut

PING = b"PING\r\n"


@pytest.fixture
async def relay(servers: Servers) -> AsyncIterator[TcpCut]:
    cut = TcpCut(servers.nats_url)
    await cut.start()
    yield cut
    await cut.stop()


@pytest.fixture
async def client(relay: TcpCut) -> AsyncIterator[Client]:
    nc = await nats.connect(relay.url)
    yield nc
    await nc.close()


def written_after(relay: TcpCut, mark: int, *commands: bytes) -> list[int]:
    """Where each command starts in what the client sent after ``mark`` (-1: not sent yet)."""
    sent = bytes(relay.sent[mark:])
    return [sent.find(c) for c in commands]


async def _handled(msg: Msg) -> None:
    return None


async def test_nats_py_flush_alone_sends_its_ping_before_a_pending_publish(client: Client, relay: TcpCut) -> None:
    subject = unique("flush")
    mark = len(relay.sent)
    await client.publish(subject, b"payload")
    await client.flush()
    pub = f"PUB {subject} ".encode()
    await until(lambda: written_after(relay, mark, pub)[0] >= 0, timeout=5, what="the PUB relayed")
    ping_at, pub_at = written_after(relay, mark, PING, pub)
    assert 0 <= ping_at < pub_at, "nats-py now writes pending commands before flush's PING: nats_flush can go"


async def test_flush_writes_a_pending_publish_before_its_ping(client: Client, relay: TcpCut) -> None:
    subject = unique("flush")
    mark = len(relay.sent)
    await client.publish(subject, b"payload")
    await flush(client)
    # No polling: the PONG is back, so the relay already forwarded the PING, and the PUB before it.
    ping_at, pub_at = written_after(relay, mark, PING, f"PUB {subject} ".encode())
    assert 0 <= pub_at < ping_at


async def test_flush_writes_a_pending_subscribe_before_its_ping(client: Client, relay: TcpCut) -> None:
    subject = unique("flush")
    mark = len(relay.sent)
    await client.subscribe(subject, cb=_handled)
    await flush(client)
    ping_at, sub_at = written_after(relay, mark, PING, f"SUB {subject} ".encode())
    assert 0 <= sub_at < ping_at


async def test_a_message_flushed_by_one_client_is_routed_before_anothers_flush_returns(
    client: Client, servers: Servers
) -> None:
    """What the service builds on: publisher's flush, then the subscriber's flush, and the message is there."""
    subject, got = unique("flush"), []

    async def keep(msg: Msg) -> None:
        got.append(msg.data)

    subscriber = await nats.connect(servers.nats_url)
    try:
        sub = await subscriber.subscribe(subject, cb=keep)
        await flush(subscriber)
        for i in range(50):
            await client.publish(subject, str(i).encode())
            await flush(client)
            await flush(subscriber)  # its PING is written after the server routed the message to it
            # No polling: by the PONG the message was received (queued for the callback, or handled).
            assert len(got) + sub.pending_msgs == i + 1
    finally:
        await subscriber.close()
