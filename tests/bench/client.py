"""HTTP clients for the benchmark: a minimal keep-alive HTTP/1.1 client on asyncio streams, or httpx.

The raw client does only what the benchmark needs (POST with Content-Length, GET, responses with
Content-Length or chunked, e.g. the streamed CSV export) so that the client spends as little of the
shared 2 cores as possible.
"""

import asyncio
import time
from typing import Protocol
from urllib.parse import urlsplit

import httpx


class Poster(Protocol):
    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def get(self, path: str) -> tuple[int, bytes]: ...

    async def put(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


# uvicorn closes a keep-alive connection after 5 s idle; never reuse one that may be closing.
MAX_IDLE_S = 3.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class RawClient:
    """A pool of keep-alive connections; each request takes one, uses it, and gives it back."""

    def __init__(self, base_url: str, headers: dict[str, str], size: int) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = f"Host: {self._host}:{self._port}\r\n{extra}".encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port, limit=1 << 22)
        return _Connection(reader, writer)

    async def _take(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < MAX_IDLE_S:
                return conn
            conn.close()
        return await self._connect()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self._send(b"POST", path, body)

    async def put(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self._send(b"PUT", path, body)

    async def _send(self, method: bytes, path: str, body: bytes) -> tuple[int, bytes]:
        request = b"%s %s HTTP/1.1\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            method,
            path.encode(),
            self._head,
            len(body),
        )
        return await self._request(request + body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self._request(b"GET %s HTTP/1.1\r\n%s\r\n" % (path.encode(), self._head))

    async def _request(self, request: bytes) -> tuple[int, bytes]:
        async with self._slots:
            conn = await self._take()
            try:
                status, data, keep = await self._exchange(conn, request)
            except BaseException:
                conn.close()
                raise
            if keep:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            else:
                conn.close()
            return status, data

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[int, bytes, bool]:
        conn.writer.write(request)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        keep = True
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
        if chunked:
            return status, await self._chunks(conn.reader), keep
        data = await conn.reader.readexactly(length) if length else b""
        return status, data, keep

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        """A chunked body (no trailers expected), read to its end."""
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class HttpxClient:
    def __init__(self, base_url: str, headers: dict[str, str], size: int) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=60,
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(path, content=body, headers={"Content-Type": "application/json"})
        return response.status_code, response.content

    async def get(self, path: str) -> tuple[int, bytes]:
        response = await self._client.get(path)
        return response.status_code, response.content

    async def put(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self._client.put(path, content=body, headers={"Content-Type": "application/json"})
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


def make_client(kind: str, base_url: str, headers: dict[str, str], size: int) -> Poster:
    if kind == "httpx":
        return HttpxClient(base_url, headers, size)
    if kind == "raw":
        return RawClient(base_url, headers, size)
    raise ValueError(f"BENCH_CLIENT must be raw or httpx, got {kind!r}")
