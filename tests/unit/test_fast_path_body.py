"""The fast paths' body reading (gateway/fast_path.py): what it read is handed to Litestar again, unchanged.

A /query request the fast path does not answer (a body too large, or one the client stopped sending) goes to the
Litestar route, which must receive exactly the messages the client sent, in order, then the rest of the stream.
"""

import asyncio
from typing import Any

from gateway.fast_path import read_body


def _client(*messages: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """An ASGI receive that hands out ``messages`` in order, then a disconnect; and the list of those it gave."""
    given: list[dict[str, Any]] = []
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        message = pending.pop(0) if pending else {"type": "http.disconnect"}
        given.append(message)
        return message

    return receive, given


async def _drain(receive: Any, count: int) -> list[dict[str, Any]]:
    return [await receive() for _ in range(count)]


def test_a_body_in_chunks_is_joined_and_replayed_as_sent() -> None:
    chunks = [{"type": "http.request", "body": b'{"a":', "more_body": True},
              {"type": "http.request", "body": b"1}", "more_body": False}]  # fmt: skip
    receive, given = _client(*chunks)
    body, replay = asyncio.run(read_body(receive, limit=100))
    assert body == b'{"a":1}'
    replayed = asyncio.run(_drain(replay, 3))
    assert replayed == [*chunks, {"type": "http.disconnect"}]  # then the client's own stream goes on
    assert given == replayed


def test_a_body_over_the_limit_is_not_read_further_and_litestar_gets_all_of_it() -> None:
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True},
              {"type": "http.request", "body": b"y" * 60, "more_body": True},
              {"type": "http.request", "body": b"z" * 10, "more_body": False}]  # fmt: skip
    receive, given = _client(*chunks)
    body, replay = asyncio.run(read_body(receive, limit=100))
    assert body is None
    assert len(given) == 2  # stopped reading once past the limit
    assert asyncio.run(_drain(replay, 3)) == chunks  # what was read, then the rest from the client


def test_a_client_that_leaves_mid_body_is_handed_over_with_its_disconnect() -> None:
    first = {"type": "http.request", "body": b"{", "more_body": True}
    receive, _ = _client(first)
    body, replay = asyncio.run(read_body(receive, limit=100))
    assert body is None
    assert asyncio.run(_drain(replay, 2)) == [first, {"type": "http.disconnect"}]
