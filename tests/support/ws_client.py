"""A real WebSocket client for the streaming tests: connect to a subscription, collect its messages."""

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


def ws_url(base_url: str, path: str, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
    return base_url.replace("http://", "ws://") + path + (f"?{query}" if query else "")


def subscribe(client: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /subscribe; the answer as JSON (fails the test on anything but 201)."""
    r = client.post("/api/v1/telemetry/subscribe", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def open_socket(base_url: str, answer: dict[str, Any], *, since: int | None = None,
                headers: dict[str, str] | None = None, use_token: bool = True, **kwargs: Any) -> Any:  # fmt: skip
    """Connect to a subscription's websocket_url (with its connect token unless told otherwise)."""
    token = answer.get("connect_token") if use_token else None
    url = ws_url(base_url, answer["websocket_url"], token=token, since=since)
    return connect(url, additional_headers=headers or {}, open_timeout=10, **kwargs)


@dataclass
class Received:
    """Messages in arrival order, with their arrival times (monotonic seconds)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    at: list[float] = field(default_factory=list)

    @property
    def points(self) -> list[dict[str, Any]]:
        return [p for m in self.messages for p in m["data_points"]]

    @property
    def dropped(self) -> int:
        return sum(m.get("dropped", 0) for m in self.messages)


async def collect(ws: ClientConnection, until: Callable[[Received], bool], within: float = 15.0) -> Received:
    """Read messages until ``until(received)`` holds; fail with what arrived when the deadline passes."""
    got = Received()
    deadline = time.monotonic() + within
    while not until(got):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            last = {k: v for k, v in got.messages[-1].items() if k != "data_points"} if got.messages else None
            raise AssertionError(f"deadline passed; received {len(got.points)} points, {got.dropped} dropped, in "
                                 f"{len(got.messages)} messages; the last one without its points: {last}")  # fmt: skip
        try:
            raw = await asyncio.wait_for(ws.recv(), remaining)
        except TimeoutError:
            continue
        got.at.append(time.monotonic())
        got.messages.append(json.loads(raw))
    return got


async def quiet_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Whatever arrives within ``seconds`` (used after the expected points: nothing else may come)."""
    extra = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            extra.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
        except TimeoutError:
            break
    return extra


async def close_code(ws: ClientConnection, within: float = 10.0) -> tuple[int | None, str | None]:
    """Wait for the server to close the socket; its close code and reason."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, None)
    except TimeoutError:
        pass
    raise AssertionError(f"socket still open after {within} s")
