"""The live stream: a subscription's WebSocket, read as typed StreamMessages, reconnecting without gap.

Library: ``websockets`` (asyncio-native, typed, the most used Python WebSocket client, maintained since
2013 and already installed with uvicorn[standard]). httpx-ws would reuse the httpx client, but it is a
smaller one-person project, and the stream needs nothing from httpx: it authenticates with the
subscription's connect token in the URL.

A dropped connection, a gateway stopping (1001) or a server error (1011) is followed by a reconnect with
``?since=<sequence_number>`` of the last message, which the gateway answers with what was missed, then live
points: no gap, no duplicate. Each reconnect asks for a fresh connect token (the first lives 120 s).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from telemetry_client.errors import TelemetryClientError
from telemetry_schemas.api.stream import StreamMessage

_DECODER = msgspec.json.Decoder(StreamMessage)
CLOSE_CANCELLED = 1000
# The gateway's close codes that no reconnect can mend (README, "Real-time streaming").
FINAL_CODES = {
    4004: "unknown, cancelled or expired subscription",
    4003: "credentials without the read scope",
    4400: "bad since",
}
RECONNECT_FIRST_WAIT = 0.5
RECONNECT_MAX_WAIT = 10.0


class StreamClosed(TelemetryClientError):
    """The service ended the subscription for good (cancelled, expired, refused)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"stream closed ({code}): {reason or FINAL_CODES.get(code, 'no reason given')}")
        self.code = code
        self.reason = reason


def ws_url(base_url: str, path: str, token: str, since: int | None) -> str:
    """The socket's URL: the gateway's scheme swapped for ws/wss, the token (and resume point) as parameters."""
    base = base_url.rstrip("/")
    base = "wss://" + base[len("https://") :] if base.startswith("https://") else base.replace("http://", "ws://", 1)
    params: dict[str, str | int] = {"token": token}
    if since is not None:
        params["since"] = since
    return f"{base}{path}?{urlencode(params)}"


async def read_stream(
    base_url: str,
    websocket_url: str,
    token: str,
    fresh_token: Callable[[], Awaitable[str]],
    *,
    since: int | None = None,
    reconnect: bool = True,
) -> AsyncIterator[StreamMessage]:
    """Yield the subscription's messages until it is cancelled; reconnect (when asked) on anything else."""
    wait = RECONNECT_FIRST_WAIT
    while True:
        code, reason = 1006, "connection lost"
        try:
            async with connect(ws_url(base_url, websocket_url, token, since), open_timeout=10) as ws:
                async for frame in ws:
                    message = _DECODER.decode(frame)
                    since = message.sequence_number or since
                    wait = RECONNECT_FIRST_WAIT  # a working connection resets the back-off
                    yield message
                if ws.close_code is not None:
                    code, reason = ws.close_code, ws.close_reason or ""
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                code, reason = exc.rcvd.code, exc.rcvd.reason
        except InvalidStatus as exc:
            code, reason = 1006, f"handshake refused with HTTP {exc.response.status_code}"
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            code, reason = 1006, str(exc)
        if code == CLOSE_CANCELLED:
            return
        if code in FINAL_CODES or not reconnect:
            raise StreamClosed(code, reason)
        await asyncio.sleep(wait)
        wait = min(wait * 2, RECONNECT_MAX_WAIT)
        token = await fresh_token()  # 404 here (subscription gone) ends the stream with that error
